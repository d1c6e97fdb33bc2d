//! `http.check`: poll an endpoint until it answers as expected.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

use super::{KindInfo, Params, StepOutputs, step_outputs};
use crate::lang::duration::HumanDuration;

/// Parameters of `http.check`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Parameters {
    /// The URL to request.
    pub url: String,
    /// The HTTP method.
    #[serde(default = "default_method")]
    pub method: String,
    /// The status code that counts as healthy.
    #[serde(default = "default_status")]
    pub expect_status: u16,
    /// Text the body must contain.
    pub contains: Option<String>,
    /// Request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Time between attempts.
    #[serde(default = "default_interval")]
    pub interval: HumanDuration,
    /// Give up (and fail the step) after this long.
    #[serde(default = "default_deadline")]
    pub deadline: HumanDuration,
}

fn default_method() -> String {
    "GET".to_owned()
}

fn default_status() -> u16 {
    200
}

fn default_interval() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(5))
}

fn default_deadline() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(300))
}

step_outputs! {
    /// Outputs of `http.check`.
    pub struct HttpCheckOutputs {
        /// the last status code
        pub status: u16,
        /// how many requests were made
        pub attempts: u64,
    }
}

/// What `http.check` declares.
pub const INFO: KindInfo = KindInfo {
    name: "http.check",
    argv_parameters: &[],
    summary: "Poll an HTTP endpoint until it answers with the expected status (and body), with a deadline.",
    destructive: false,
    idempotent: true,
    undo: None,
    outputs: HttpCheckOutputs::DECLARED,
    preflight: "the URL parses",
    notes: "Each request has its own timeout (the interval, at least 5s). Use it as the health check \
            of a new target before a DNS switch.",
    example: "- id: api-healthy\n  kind: http.check\n  with: { url: \"https://api.dr.example.com/healthz\", contains: ok, deadline: 10m }\n",
    role: super::Role::HealthCheck,
    verifies: super::Verifies::Always,
    parameters_schema: super::schema_of::<Parameters>,
    outputs_schema: super::schema_of::<HttpCheckOutputs>,
    describe,
    ..KindInfo::COMMON
};

/// `http.check` in the kind table: how it runs, checks and undoes.
pub const KIND: super::Kind = super::Kind {
    info: &INFO,
    execute: |with, _| Box::pin(async move { run(super::parameters(with)?).await?.into_map() }),
    preflight: |with, _| Box::pin(async move { Ok(super::shared::url_preflight(&with, "url")) }),
    undo: None,
};

/// The dry-run sentence.
#[must_use]
pub fn describe(with: &Params<'_>) -> String {
    let mut sentence = format!(
        "poll {} {} every {} until it answers {}",
        with.text_or("method", "GET"),
        with.text("url"),
        with.text_or("interval", "5s"),
        with.text_or("expect_status", "200")
    );
    if with.has("contains") {
        sentence.push_str(&format!(" containing \"{}\"", with.text("contains")));
    }
    sentence.push_str(&format!(" (deadline {})", with.text_or("deadline", "5m")));
    sentence
}

/// Polls until the endpoint answers as expected or the deadline passes.
///
/// # Errors
/// The deadline passed; the message has the last answer.
pub async fn run(parameters: Parameters) -> Result<HttpCheckOutputs, super::StepError> {
    let interval = parameters.interval.get().max(std::time::Duration::from_millis(50));
    let request_timeout = interval.max(std::time::Duration::from_secs(5));
    let client = reqwest::Client::builder()
        .timeout(request_timeout)
        .build()
        .map_err(|error| super::StepError::Failed(format!("cannot build an HTTP client: {error}")))?;
    let method = reqwest::Method::from_bytes(parameters.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| super::StepError::Failed(format!("`{}` is not an HTTP method", parameters.method)))?;
    let deadline = tokio::time::Instant::now() + parameters.deadline.get();
    let mut attempts: u64 = 0;
    loop {
        attempts += 1;
        let mut request = client.request(method.clone(), &parameters.url);
        for (name, value) in &parameters.headers {
            request = request.header(name, value);
        }
        let last = match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let body = response.text().await.unwrap_or_default();
                let body_ok =
                    parameters.contains.as_ref().is_none_or(|needle| body.contains(needle.as_str()));
                if status == parameters.expect_status && body_ok {
                    return Ok(HttpCheckOutputs { status, attempts });
                }
                if status == parameters.expect_status {
                    format!(
                        "status {status} but the body does not contain {:?}",
                        parameters.contains.as_deref().unwrap_or("")
                    )
                } else {
                    format!("status {status}")
                }
            }
            Err(error) => format!("request failed: {error}"),
        };
        if tokio::time::Instant::now() + interval > deadline {
            return Err(super::StepError::Failed(format!(
                "{} {} did not answer {} within {} ({attempts} attempts); last: {last}",
                parameters.method, parameters.url, parameters.expect_status, parameters.deadline
            )));
        }
        tokio::time::sleep(interval).await;
    }
}
