//! The Route53 calls the step makes, each with bounded retries and backoff, and the
//! `PENDING` → `INSYNC` wait. The SDK's own retries are off so that every retry is
//! visible (progress notes), bounded by the step's deadline, and counted here.

use std::future::Future;
use std::time::{Duration, Instant};

use aws_sdk_route53::Client;
use aws_sdk_route53::config::retry::RetryConfig;
use aws_sdk_route53::config::timeout::TimeoutConfig;
use aws_sdk_route53::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_route53::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_route53::types::{Change, ChangeBatch, ChangeStatus, RrType};
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};

use crate::sys::progress::ProgressSink;
use records::{PreviousHealthCheck, RecordKey, RecordSnapshot, normalise_name};

/// Record sets as Route53 lists them and as a change asks for them.
pub mod records;

use schemars::JsonSchema;
use serde::Deserialize;

/// One record set change.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordChange {
    /// What to do.
    pub action: ChangeAction,
    /// The record name, e.g. `api.example.com.`.
    pub name: String,
    /// The record type (`A`, `AAAA`, `CNAME`, `TXT`, ...).
    #[serde(rename = "type")]
    pub record_type: String,
    /// TTL in seconds (Route53 takes up to 2147483647).
    #[schemars(range(max = 2_147_483_647))]
    pub ttl: Option<u32>,
    /// The values.
    #[serde(default)]
    pub values: Vec<String>,
    /// For weighted/failover records.
    pub set_identifier: Option<String>,
    /// `PRIMARY` or `SECONDARY`.
    pub failover: Option<Failover>,
    /// The health check the record is tied to.
    pub health_check_id: Option<String>,
}

/// A Route53 change action.
#[derive(Clone, Copy, Debug, Deserialize, JsonSchema, PartialEq, Eq)]
pub enum ChangeAction {
    /// Create or replace.
    #[serde(rename = "UPSERT")]
    Upsert,
    /// Create; fails if it exists.
    #[serde(rename = "CREATE")]
    Create,
    /// Delete; the values must match.
    #[serde(rename = "DELETE")]
    Delete,
}

/// A failover role.
#[derive(Clone, Copy, Debug, Deserialize, JsonSchema, PartialEq, Eq)]
pub enum Failover {
    /// Serves while healthy.
    #[serde(rename = "PRIMARY")]
    Primary,
    /// Serves when the primary is unhealthy.
    #[serde(rename = "SECONDARY")]
    Secondary,
}

/// Why a Route53 change did not happen or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum Route53Error {
    /// A change of the plan cannot be submitted as written.
    #[error("{change}: {problem}")]
    InvalidChange {
        /// `UPSERT api.example.com. CNAME`.
        change: String,
        /// What is wrong and what to write instead.
        problem: String,
    },
    /// The zone does not exist (for these credentials).
    #[error(
        "hosted zone `{zone}` not found ({detail}); check the id or name, and that the credentials belong to \
         the account that owns it"
    )]
    ZoneNotFound {
        /// The zone as written.
        zone: String,
        /// What Route53 said.
        detail: String,
    },
    /// Several zones have the name (a private and a public one, typically).
    #[error(
        "several hosted zones are named `{zone}`: {candidates}; give the id of the one to change as `zone`"
    )]
    AmbiguousZone {
        /// The zone as written.
        zone: String,
        /// Their ids and visibility.
        candidates: String,
    },
    /// A record set the step would replace uses routing it cannot record for undo.
    #[error(
        "{record} uses {policy} routing, which route53.change cannot record and put back; change this record \
         set with `exec` and the aws CLI instead"
    )]
    UnsupportedRouting {
        /// The record set.
        record: String,
        /// The routing policy.
        policy: &'static str,
    },
    /// A call failed for good.
    #[error("{operation} for {target} failed: {detail}")]
    Api {
        /// The API operation.
        operation: String,
        /// What it was about.
        target: String,
        /// Route53's code and message, or the transport error.
        detail: String,
    },
    /// A change was sent but its answer was lost: it may or may not have been applied.
    #[error(
        "{operation} for {target}: no answer ({detail}); the change may or may not have been applied: resume \
         the run, which reads the zone before submitting anything"
    )]
    Unconfirmed {
        /// The API operation.
        operation: String,
        /// What it was about.
        target: String,
        /// The transport error.
        detail: String,
    },
    /// The SDK refused to build a request.
    #[error("cannot build {what}: {detail}")]
    Build {
        /// What was being built.
        what: String,
        /// The SDK's reason.
        detail: String,
    },
    /// The change did not reach `INSYNC` in time.
    #[error(
        "change {change_id} is still {status} after {waited} (deadline {deadline}); Route53 accepted it and will \
         apply it: raise `deadline` or check the AWS Health Dashboard, then resume the run (it waits for the \
         same change and submits nothing new)"
    )]
    NotInsync {
        /// The change id.
        change_id: String,
        /// Its last status.
        status: String,
        /// How long the step waited.
        waited: String,
        /// The step's deadline.
        deadline: String,
    },
    /// The run directory's checkpoint could not be used.
    #[error(
        "cannot {action} the checkpoint {path}: {detail}; it records the record sets from before the change, \
         which undo needs: fix the run directory (delete the file only if no change was made yet)"
    )]
    Checkpoint {
        /// The file.
        path: String,
        /// Read, parse, write.
        action: String,
        /// The error.
        detail: String,
    },
    /// Undo lacks what the step recorded.
    #[error("cannot undo: {0}; restore the record sets by hand from the run's journal")]
    Undo(String),
}

/// Route53 is global; its API is signed for this region unless the plan says otherwise.
pub const DEFAULT_REGION: &str = "us-east-1";
/// Attempts of one call before its error is final.
const MAXIMUM_ATTEMPTS: u32 = 8;
/// The first pause between attempts; it doubles up to [`MAXIMUM_RETRY_PAUSE`].
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(500);
const MAXIMUM_RETRY_PAUSE: Duration = Duration::from_secs(8);
/// The first pause between `GetChange` polls; it doubles up to [`MAXIMUM_POLL_PAUSE`].
const FIRST_POLL_PAUSE: Duration = Duration::from_secs(1);
const MAXIMUM_POLL_PAUSE: Duration = Duration::from_secs(10);
/// Pages of `ListResourceRecordSets` read for one record set at most.
const MAXIMUM_PAGES: usize = 50;
/// Error codes that mean "not done, try again later" (Route53 answers them with 400).
const RETRYABLE_CODES: &[&str] = &[
    "PriorRequestNotComplete",
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
];

/// A Route53 client with credentials from the default chain (environment, profile,
/// SSO, web identity, container, instance metadata).
///
/// `endpoint` overrides where requests go; without it `AWS_ENDPOINT_URL_ROUTE_53`, then
/// `AWS_ENDPOINT_URL` apply, then AWS's own endpoint.
pub async fn connect(endpoint: Option<&str>, region: Option<&str>) -> Client {
    let region = Region::new(region.unwrap_or(DEFAULT_REGION).to_owned());
    let shared = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client())
        .region(region)
        .load()
        .await;
    let endpoint = endpoint.map(str::to_owned).or_else(|| {
        ["AWS_ENDPOINT_URL_ROUTE_53", "AWS_ENDPOINT_URL"]
            .into_iter()
            .find_map(|name| std::env::var(name).ok().filter(|value| !value.is_empty()))
    });
    let mut builder = aws_sdk_route53::config::Builder::from(&shared)
        .retry_config(RetryConfig::disabled())
        .timeout_config(timeouts());
    builder.set_endpoint_url(endpoint);
    Client::from_conf(builder.build())
}

/// A Route53 client with the given static credentials, for tools and tests that talk to
/// a Route53-compatible endpoint (moto, a stub) without touching the environment.
#[must_use]
pub fn connect_with_credentials(
    endpoint: &str,
    region: Option<&str>,
    access_key_id: &str,
    secret_access_key: &str,
) -> Client {
    let config = aws_sdk_route53::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(http_client())
        .region(Region::new(region.unwrap_or(DEFAULT_REGION).to_owned()))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(access_key_id, secret_access_key, None, None, "dr-plan"))
        .retry_config(RetryConfig::disabled())
        .timeout_config(timeouts())
        .build();
    Client::from_conf(config)
}

/// rustls with ring, built here: the SDK's default TLS stack is a second, older one
/// (see DEPENDENCIES.md).
fn http_client() -> aws_sdk_route53::config::SharedHttpClient {
    aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https()
}

/// A hung connection must not eat the step's deadline in one call.
fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(10))
        .operation_attempt_timeout(Duration::from_secs(60))
        .build()
}

/// What the calls need besides the client: the deadline and where to say what happens.
pub struct Session<'a> {
    /// The client.
    pub client: &'a Client,
    /// No call is retried, and no wait continues, past this instant.
    pub deadline: Instant,
    /// Progress notes (retries, waiting for INSYNC).
    pub progress: &'a ProgressSink,
}

/// Which failures a call retries by itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Retry {
    /// Every retryable failure (reads, and writes that are safe to repeat).
    Always,
    /// Only answers that say the request was refused (throttling, PriorRequestNotComplete,
    /// 5xx); a lost answer is returned as [`Route53Error::Unconfirmed`].
    OnlyWhenRefused,
}

/// A hosted zone, found by id or name.
#[derive(Clone, Debug)]
pub struct Zone {
    /// The bare id (`Z0123...`).
    pub id: String,
    /// The zone's name with its trailing dot.
    pub name: String,
}

impl Session<'_> {
    /// Calls `send` until it succeeds, fails for good, runs out of attempts or the
    /// deadline passes; retryable failures back off exponentially.
    async fn call<Output, Failure, Attempt>(
        &self,
        operation: &str,
        target: &str,
        send: impl FnMut() -> Attempt,
    ) -> Result<Output, Route53Error>
    where
        Attempt: Future<Output = Result<Output, SdkError<Failure>>>,
        Failure: ProvideErrorMetadata + std::error::Error + 'static,
    {
        self.call_with(Retry::Always, operation, target, send).await
    }

    async fn call_with<Output, Failure, Attempt>(
        &self,
        retry: Retry,
        operation: &str,
        target: &str,
        mut send: impl FnMut() -> Attempt,
    ) -> Result<Output, Route53Error>
    where
        Attempt: Future<Output = Result<Output, SdkError<Failure>>>,
        Failure: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let mut pause = FIRST_RETRY_PAUSE;
        let mut attempt = 1;
        loop {
            let error = match send().await {
                Ok(output) => return Ok(output),
                Err(error) => error,
            };
            if retry == Retry::OnlyWhenRefused && !matches!(error, SdkError::ServiceError(_)) {
                return Err(Route53Error::Unconfirmed {
                    operation: operation.to_owned(),
                    target: target.to_owned(),
                    detail: describe_error(&error),
                });
            }
            let reason = retry_reason(&error);
            let out_of_time = Instant::now() + pause >= self.deadline;
            match reason {
                Some(reason) if attempt < MAXIMUM_ATTEMPTS && !out_of_time => {
                    self.progress.note(format!(
                        "{operation} on {target}: {reason}; retrying in {} (attempt {} of {MAXIMUM_ATTEMPTS})",
                        crate::lang::duration::format_duration(pause),
                        attempt + 1
                    ));
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAXIMUM_RETRY_PAUSE);
                    attempt += 1;
                }
                _ => {
                    let gave_up = match reason {
                        Some(_) if out_of_time => " (the step's deadline left no time to retry)",
                        Some(_) => " (still failing after every retry)",
                        None => "",
                    };
                    return Err(Route53Error::Api {
                        operation: operation.to_owned(),
                        target: target.to_owned(),
                        detail: format!("{}{gave_up}", describe_error(&error)),
                    });
                }
            }
        }
    }

    /// Finds the zone by id (`Z...`, `/hostedzone/Z...`) or by name (`example.com.`).
    ///
    /// # Errors
    /// No such zone; several zones of that name (private and public); the API failed.
    pub async fn zone(&self, zone: &str) -> Result<Zone, Route53Error> {
        let trimmed = zone.trim();
        let is_name = !trimmed.starts_with("/hostedzone/") && trimmed.contains('.');
        if !is_name {
            let id = trimmed.trim_start_matches("/hostedzone/").to_owned();
            let found = self
                .call("GetHostedZone", &format!("zone {id}"), || self.client.get_hosted_zone().id(&id).send())
                .await
                .map_err(|error| match error {
                    Route53Error::Api { detail, .. } if detail.starts_with("NoSuchHostedZone") => {
                        Route53Error::ZoneNotFound { zone: zone.to_owned(), detail }
                    }
                    other => other,
                })?;
            let name = found.hosted_zone().map(|zone| zone.name().to_owned()).unwrap_or_default();
            return Ok(Zone { id, name });
        }
        let wanted = normalise_name(trimmed);
        let listed = self
            .call("ListHostedZonesByName", &format!("zone {wanted}"), || {
                self.client.list_hosted_zones_by_name().dns_name(&wanted).max_items(100).send()
            })
            .await?;
        let matching: Vec<(String, bool)> = listed
            .hosted_zones()
            .iter()
            .filter(|candidate| normalise_name(candidate.name()) == wanted)
            .map(|candidate| {
                let private = candidate.config().is_some_and(|config| config.private_zone());
                (candidate.id().trim_start_matches("/hostedzone/").to_owned(), private)
            })
            .collect();
        match matching.as_slice() {
            [] => Err(Route53Error::ZoneNotFound {
                zone: zone.to_owned(),
                detail: "no hosted zone has this name in the account".to_owned(),
            }),
            [(id, _)] => Ok(Zone { id: id.clone(), name: wanted }),
            several => Err(Route53Error::AmbiguousZone {
                zone: zone.to_owned(),
                candidates: several
                    .iter()
                    .map(|(id, private)| format!("{id} ({})", if *private { "private" } else { "public" }))
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// The record set with this key, or `None` when the zone has none.
    ///
    /// # Errors
    /// The API failed, or the set uses a routing policy the step cannot restore.
    pub async fn record(&self, zone: &Zone, key: &RecordKey) -> Result<Option<RecordSnapshot>, Route53Error> {
        let wanted_name = normalise_name(&key.name);
        let mut start_name = key.name.clone();
        let mut start_type = key.record_type.clone();
        // The first page starts at the name and type only: Route53 wants an identifier
        // only as a page boundary it returned itself.
        let mut start_identifier: Option<String> = None;
        for _ in 0..MAXIMUM_PAGES {
            let page = self
                .call("ListResourceRecordSets", &format!("{key} in zone {}", zone.id), || {
                    self.client
                        .list_resource_record_sets()
                        .hosted_zone_id(&zone.id)
                        .start_record_name(&start_name)
                        .start_record_type(RrType::from(start_type.as_str()))
                        .set_start_record_identifier(start_identifier.clone())
                        .max_items(100)
                        .send()
                })
                .await?;
            for listed in page.resource_record_sets() {
                let listed_key = RecordKey {
                    name: listed.name().to_owned(),
                    record_type: listed.r#type().as_str().to_owned(),
                    set_identifier: listed.set_identifier().map(str::to_owned),
                };
                if listed_key.same_as(key) {
                    return RecordSnapshot::from_listed(listed).map(Some);
                }
                // Listings are sorted by name, then type: once past them, there is none.
                let past = normalise_name(listed.name()) != wanted_name
                    || !listed.r#type().as_str().eq_ignore_ascii_case(&key.record_type);
                if past {
                    return Ok(None);
                }
            }
            let next = page.next_record_name().zip(page.next_record_type());
            match next {
                Some((name, record_type)) if page.is_truncated() && normalise_name(name) == wanted_name => {
                    start_name = name.to_owned();
                    start_type = record_type.as_str().to_owned();
                    start_identifier = page.next_record_identifier().map(str::to_owned);
                }
                _ => return Ok(None),
            }
        }
        Err(Route53Error::Api {
            operation: "ListResourceRecordSets".to_owned(),
            target: format!("{key} in zone {}", zone.id),
            detail: format!("not found within {MAXIMUM_PAGES} pages of record sets of that name"),
        })
    }

    /// Submits one batch and returns the change id.
    ///
    /// # Errors
    /// Route53 refused the batch (the message says which change and why).
    pub async fn submit(
        &self,
        zone: &Zone,
        changes: Vec<Change>,
        comment: &str,
    ) -> Result<String, Route53Error> {
        let batch =
            ChangeBatch::builder().set_changes(Some(changes)).comment(comment).build().map_err(|error| {
                Route53Error::Build { what: "the change batch".to_owned(), detail: error.to_string() }
            })?;
        // A lost answer is not retried here: the caller reads the zone again first, so
        // that a batch applied once is not sent twice.
        let answer = self
            .call_with(
                Retry::OnlyWhenRefused,
                "ChangeResourceRecordSets",
                &format!("zone {} ({})", zone.name, zone.id),
                || {
                    self.client
                        .change_resource_record_sets()
                        .hosted_zone_id(&zone.id)
                        .change_batch(batch.clone())
                        .send()
                },
            )
            .await?;
        Ok(answer.change_info().map(|info| info.id().to_owned()).unwrap_or_default())
    }

    /// Polls `GetChange` until the change is `INSYNC` or the deadline passes.
    ///
    /// # Errors
    /// The deadline passed first (the change was accepted and will still apply), or the
    /// API failed.
    pub async fn wait_insync(&self, change_id: &str, total_deadline: Duration) -> Result<(), Route53Error> {
        let started = Instant::now();
        let mut pause = FIRST_POLL_PAUSE;
        loop {
            let answer = self
                .call("GetChange", &format!("change {change_id}"), || {
                    self.client.get_change().id(change_id).send()
                })
                .await?;
            let status = answer.change_info().map(|info| info.status().clone());
            if status == Some(ChangeStatus::Insync) {
                return Ok(());
            }
            let status_text = status.as_ref().map_or("no status", ChangeStatus::as_str).to_owned();
            if Instant::now() + pause > self.deadline {
                return Err(Route53Error::NotInsync {
                    change_id: change_id.to_owned(),
                    status: status_text,
                    waited: crate::lang::duration::format_duration(started.elapsed()),
                    deadline: crate::lang::duration::format_duration(total_deadline),
                });
            }
            self.progress.note(format!(
                "waiting for INSYNC: change {change_id} is {status_text} after {}",
                crate::lang::duration::format_duration(Duration::from_secs(started.elapsed().as_secs()))
            ));
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAXIMUM_POLL_PAUSE);
        }
    }

    /// A health check's `Inverted` and `Disabled` flags.
    ///
    /// # Errors
    /// No such health check, or the API failed.
    pub async fn health_check(&self, id: &str) -> Result<PreviousHealthCheck, Route53Error> {
        let answer = self
            .call("GetHealthCheck", &format!("health check {id}"), || {
                self.client.get_health_check().health_check_id(id).send()
            })
            .await?;
        let config = answer.health_check().and_then(|check| check.health_check_config());
        Ok(PreviousHealthCheck {
            id: id.to_owned(),
            inverted: config.and_then(|config| config.inverted()).unwrap_or(false),
            disabled: config.and_then(|config| config.disabled()).unwrap_or(false),
        })
    }

    /// Sets a health check's flags (those given; the others stay as they are).
    ///
    /// # Errors
    /// The API failed.
    pub async fn update_health_check(
        &self,
        id: &str,
        inverted: Option<bool>,
        disabled: Option<bool>,
    ) -> Result<(), Route53Error> {
        self.call("UpdateHealthCheck", &format!("health check {id}"), || {
            self.client
                .update_health_check()
                .health_check_id(id)
                .set_inverted(inverted)
                .set_disabled(disabled)
                .send()
        })
        .await
        .map(|_| ())
    }
}

/// Why an error is worth another attempt, or `None` when it is final.
fn retry_reason<Failure: ProvideErrorMetadata>(error: &SdkError<Failure>) -> Option<String> {
    match error {
        SdkError::TimeoutError(_) => Some("the request timed out".to_owned()),
        SdkError::DispatchFailure(failure) if failure.is_io() || failure.is_timeout() => {
            Some("the connection failed".to_owned())
        }
        SdkError::ResponseError(_) => Some("the response was cut off".to_owned()),
        SdkError::ServiceError(_) => {
            let status = error.raw_response().map(|response| response.status().as_u16()).unwrap_or_default();
            let code = error.code().unwrap_or_default();
            if RETRYABLE_CODES.contains(&code) {
                Some(format!("Route53 answered {code}"))
            } else if status == 429 || status >= 500 {
                Some(format!("Route53 answered HTTP {status} {code}").trim_end().to_owned())
            } else {
                None
            }
        }
        _ => None,
    }
}

/// `Code: message`, or the chain of causes when there is no service error, with a hint
/// when the credentials are what is missing.
fn describe_error<Failure: ProvideErrorMetadata + std::error::Error + 'static>(
    error: &SdkError<Failure>,
) -> String {
    if let (Some(code), message) = (error.code(), error.message()) {
        return message.map_or_else(|| code.to_owned(), |message| format!("{code}: {message}"));
    }
    let mut causes: Vec<String> = Vec::new();
    let mut current: Option<&dyn std::error::Error> = Some(error);
    while let Some(cause) = current {
        let text = cause.to_string();
        // Errors often repeat their source in their own message.
        if !causes.iter().any(|known| known.contains(&text)) {
            causes.push(text);
        }
        current = cause.source();
    }
    let chain = causes.join(": ");
    if chain.contains("loading credentials") {
        format!(
            "{chain}; no usable AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or AWS_PROFILE, \
             or run where an IAM role applies"
        )
    } else {
        chain
    }
}
