//! Record sets as the step sees them: what a change asks for, what the zone holds, and
//! whether the zone already holds what was asked (so a re-run submits nothing).

use aws_sdk_route53::types::{
    AliasTarget, Change, ChangeAction as SdkAction, ResourceRecord, ResourceRecordSet,
    ResourceRecordSetFailover, ResourceRecordSetRegion, RrType,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ChangeAction, Failover, RecordChange, Route53Error};

/// What identifies one record set in a zone: its name, type and set identifier.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordKey {
    /// The name, as written in the plan or returned by Route53.
    pub name: String,
    /// The type, upper case (`A`, `CNAME`, ...).
    #[serde(rename = "type")]
    pub record_type: String,
    /// The set identifier of weighted, failover, latency ... records.
    pub set_identifier: Option<String>,
}

impl RecordKey {
    /// Whether both keys name the same record set (names compared as DNS names).
    #[must_use]
    pub fn same_as(&self, other: &RecordKey) -> bool {
        normalise_name(&self.name) == normalise_name(&other.name)
            && self.record_type.eq_ignore_ascii_case(&other.record_type)
            && self.set_identifier == other.set_identifier
    }
}

impl std::fmt::Display for RecordKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{} {}", self.name, self.record_type)?;
        if let Some(identifier) = &self.set_identifier {
            write!(formatter, " (set {identifier})")?;
        }
        Ok(())
    }
}

/// An alias target (records that point at an AWS resource instead of holding values).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AliasSnapshot {
    /// The target's hosted zone id.
    pub hosted_zone_id: String,
    /// The target's DNS name.
    pub dns_name: String,
    /// Whether Route53 checks the target's health.
    pub evaluate_target_health: bool,
}

/// A record set, complete enough to put it back exactly as it was.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RecordSnapshot {
    /// The name.
    pub name: String,
    /// The type.
    #[serde(rename = "type")]
    pub record_type: String,
    /// TTL in seconds (absent for alias records).
    pub ttl: Option<i64>,
    /// The values (empty for alias records).
    #[serde(default)]
    pub values: Vec<String>,
    /// The set identifier.
    pub set_identifier: Option<String>,
    /// `PRIMARY` or `SECONDARY`.
    pub failover: Option<String>,
    /// The health check the record is tied to.
    pub health_check_id: Option<String>,
    /// The weight of a weighted record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i64>,
    /// The region of a latency record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Whether this is a multivalue answer record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multi_value_answer: Option<bool>,
    /// The alias target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<AliasSnapshot>,
}

impl RecordSnapshot {
    /// The record set as Route53 listed it.
    ///
    /// # Errors
    /// It uses a routing policy this step cannot put back (geolocation, CIDR,
    /// geoproximity, traffic policy): changing it would lose what undo needs.
    pub fn from_listed(record: &ResourceRecordSet) -> Result<RecordSnapshot, Route53Error> {
        let unsupported = if record.geo_location().is_some() {
            Some("geolocation")
        } else if record.cidr_routing_config().is_some() {
            Some("CIDR")
        } else if record.geo_proximity_location().is_some() {
            Some("geoproximity")
        } else if record.traffic_policy_instance_id().is_some() {
            Some("traffic policy")
        } else {
            None
        };
        if let Some(policy) = unsupported {
            return Err(Route53Error::UnsupportedRouting {
                record: format!("{} {}", record.name(), record.r#type().as_str()),
                policy,
            });
        }
        Ok(RecordSnapshot {
            name: record.name().to_owned(),
            record_type: record.r#type().as_str().to_owned(),
            ttl: record.ttl(),
            values: record.resource_records().iter().map(|value| value.value().to_owned()).collect(),
            set_identifier: record.set_identifier().map(str::to_owned),
            failover: record.failover().map(|failover| failover.as_str().to_owned()),
            health_check_id: record.health_check_id().map(str::to_owned),
            weight: record.weight(),
            region: record.region().map(|region| region.as_str().to_owned()),
            multi_value_answer: record.multi_value_answer(),
            alias: record.alias_target().map(|alias| AliasSnapshot {
                hosted_zone_id: alias.hosted_zone_id().to_owned(),
                dns_name: alias.dns_name().to_owned(),
                evaluate_target_health: alias.evaluate_target_health(),
            }),
        })
    }

    /// The record set a CREATE or UPSERT of the plan asks for.
    ///
    /// # Errors
    /// The change lacks a TTL or values, or sets `failover` without `set_identifier`.
    pub fn desired(change: &RecordChange) -> Result<RecordSnapshot, Route53Error> {
        let invalid = |problem: &str| Route53Error::InvalidChange {
            change: describe_change(change),
            problem: problem.to_owned(),
        };
        let Some(ttl) = change.ttl else {
            return Err(invalid("`ttl` is required to create or replace a record set"));
        };
        if change.values.is_empty() {
            return Err(invalid("`values` is empty; give at least one value"));
        }
        if change.failover.is_some() && change.set_identifier.is_none() {
            return Err(invalid("a failover record needs a `set_identifier`"));
        }
        Ok(RecordSnapshot {
            name: change.name.clone(),
            record_type: change.record_type.to_ascii_uppercase(),
            ttl: Some(i64::from(ttl)),
            values: change.values.clone(),
            set_identifier: change.set_identifier.clone(),
            failover: change.failover.map(|failover| failover_text(failover).to_owned()),
            health_check_id: change.health_check_id.clone(),
            weight: None,
            region: None,
            multi_value_answer: None,
            alias: None,
        })
    }

    /// The key of this record set.
    #[must_use]
    pub fn key(&self) -> RecordKey {
        RecordKey {
            name: self.name.clone(),
            record_type: self.record_type.clone(),
            set_identifier: self.set_identifier.clone(),
        }
    }

    /// Whether both describe the same DNS answer: names compared as DNS names, values
    /// in any order. What an UPSERT would change is exactly what differs here.
    #[must_use]
    pub fn same_content(&self, other: &RecordSnapshot) -> bool {
        let sorted = |values: &[String]| {
            let mut values = values.to_vec();
            values.sort();
            values
        };
        self.key().same_as(&other.key())
            && self.ttl == other.ttl
            && sorted(&self.values) == sorted(&other.values)
            && self.failover == other.failover
            && self.health_check_id == other.health_check_id
            && self.weight == other.weight
            && self.region == other.region
            && self.multi_value_answer == other.multi_value_answer
            && self.alias.as_ref().map(normalised_alias) == other.alias.as_ref().map(normalised_alias)
    }

    /// The SDK's record set, for a change.
    ///
    /// # Errors
    /// The SDK refused to build it (a required field is missing).
    pub fn to_sdk(&self) -> Result<ResourceRecordSet, Route53Error> {
        let mut builder = ResourceRecordSet::builder()
            .name(&self.name)
            .r#type(RrType::from(self.record_type.as_str()))
            .set_ttl(self.ttl)
            .set_set_identifier(self.set_identifier.clone())
            .set_failover(self.failover.as_deref().map(ResourceRecordSetFailover::from))
            .set_health_check_id(self.health_check_id.clone())
            .set_weight(self.weight)
            .set_region(self.region.as_deref().map(ResourceRecordSetRegion::from))
            .set_multi_value_answer(self.multi_value_answer);
        for value in &self.values {
            let record = ResourceRecord::builder().value(value).build().map_err(|error| {
                Route53Error::Build { what: format!("a value of {}", self.key()), detail: error.to_string() }
            })?;
            builder = builder.resource_records(record);
        }
        if let Some(alias) = &self.alias {
            let target = AliasTarget::builder()
                .hosted_zone_id(&alias.hosted_zone_id)
                .dns_name(&alias.dns_name)
                .evaluate_target_health(alias.evaluate_target_health)
                .build()
                .map_err(|error| Route53Error::Build {
                    what: format!("the alias target of {}", self.key()),
                    detail: error.to_string(),
                })?;
            builder = builder.alias_target(target);
        }
        builder
            .build()
            .map_err(|error| Route53Error::Build { what: self.key().to_string(), detail: error.to_string() })
    }

    /// A change of this record set.
    ///
    /// # Errors
    /// See [`RecordSnapshot::to_sdk`].
    pub fn to_change(&self, action: ChangeAction) -> Result<Change, Route53Error> {
        let action = match action {
            ChangeAction::Upsert => SdkAction::Upsert,
            ChangeAction::Create => SdkAction::Create,
            ChangeAction::Delete => SdkAction::Delete,
        };
        Change::builder()
            .action(action)
            .resource_record_set(self.to_sdk()?)
            .build()
            .map_err(|error| Route53Error::Build { what: self.key().to_string(), detail: error.to_string() })
    }
}

/// One record set as it was before the step changed it: `record` is null when the set
/// did not exist (undo then deletes what the step created).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PreviousRecord {
    /// The name, as written in the plan.
    pub name: String,
    /// The type.
    #[serde(rename = "type")]
    pub record_type: String,
    /// The set identifier.
    pub set_identifier: Option<String>,
    /// The record set as it was, or null when there was none.
    pub record: Option<RecordSnapshot>,
}

impl PreviousRecord {
    /// The key of the record set.
    #[must_use]
    pub fn key(&self) -> RecordKey {
        RecordKey {
            name: self.name.clone(),
            record_type: self.record_type.clone(),
            set_identifier: self.set_identifier.clone(),
        }
    }
}

/// A health check's flags as they were before the step changed them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PreviousHealthCheck {
    /// The health check id.
    pub id: String,
    /// Whether it was inverted.
    pub inverted: bool,
    /// Whether it was disabled.
    pub disabled: bool,
}

/// The key a change of the plan is about.
#[must_use]
pub fn change_key(change: &RecordChange) -> RecordKey {
    RecordKey {
        name: change.name.clone(),
        record_type: change.record_type.to_ascii_uppercase(),
        set_identifier: change.set_identifier.clone(),
    }
}

/// `UPSERT api.example.com. CNAME`, for messages.
#[must_use]
pub fn describe_change(change: &RecordChange) -> String {
    let action = match change.action {
        ChangeAction::Upsert => "UPSERT",
        ChangeAction::Create => "CREATE",
        ChangeAction::Delete => "DELETE",
    };
    format!("{action} {}", change_key(change))
}

fn failover_text(failover: Failover) -> &'static str {
    match failover {
        Failover::Primary => "PRIMARY",
        Failover::Secondary => "SECONDARY",
    }
}

/// A DNS name in the form Route53 compares: lower case, with the trailing dot, and
/// with the octal escapes Route53 lists (`\052` for `*`) decoded.
#[must_use]
pub fn normalise_name(name: &str) -> String {
    let mut decoded = String::with_capacity(name.len() + 1);
    let characters: Vec<char> = name.chars().collect();
    let mut index = 0;
    while index < characters.len() {
        if characters[index] == '\\'
            && let Some(digits) = characters.get(index + 1..index + 4)
            && let Some(code) = octal_value(digits)
            && let Some(character) = char::from_u32(code)
        {
            decoded.push(character);
            index += 4;
        } else {
            decoded.push(characters[index]);
            index += 1;
        }
    }
    let mut normalised = decoded.to_ascii_lowercase();
    if !normalised.ends_with('.') {
        normalised.push('.');
    }
    normalised
}

/// Whether `name` lies in the zone named `zone` (both compared as DNS names).
#[must_use]
pub fn in_zone(name: &str, zone: &str) -> bool {
    let name = normalise_name(name);
    let zone = normalise_name(zone);
    name == zone || name.ends_with(&format!(".{zone}"))
}

/// The value of three octal digits, or `None` when they are not all octal.
fn octal_value(digits: &[char]) -> Option<u32> {
    digits.iter().try_fold(0, |value, digit| digit.to_digit(8).map(|digit| value * 8 + digit))
}

fn normalised_alias(alias: &AliasSnapshot) -> (String, String, bool) {
    (alias.hosted_zone_id.clone(), normalise_name(&alias.dns_name), alias.evaluate_target_health)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(action: ChangeAction, values: &[&str]) -> RecordChange {
        RecordChange {
            action,
            name: "API.example.com".to_owned(),
            record_type: "cname".to_owned(),
            ttl: Some(60),
            values: values.iter().map(|value| (*value).to_owned()).collect(),
            set_identifier: None,
            failover: None,
            health_check_id: None,
        }
    }

    #[test]
    fn names_compare_as_dns_names() {
        assert_eq!(normalise_name("API.Example.com"), "api.example.com.");
        assert_eq!(normalise_name("\\052.example.com."), "*.example.com.");
        assert_eq!(normalise_name("a\\\\b.example.com."), "a\\\\b.example.com.");
        assert!(in_zone("api.example.com", "example.com."));
        assert!(in_zone("example.com.", "Example.com"));
        assert!(!in_zone("api.example.org.", "example.com."));
        assert!(!in_zone("badexample.com.", "example.com."));
    }

    #[test]
    fn desired_records_compare_with_listed_ones_in_any_order() {
        let desired =
            RecordSnapshot::desired(&change(ChangeAction::Upsert, &["b.example.net.", "a.example.net."]))
                .expect("valid");
        let mut listed = desired.clone();
        listed.name = "api.example.com.".to_owned();
        listed.values.reverse();
        assert!(desired.same_content(&listed));
        listed.ttl = Some(300);
        assert!(!desired.same_content(&listed));
    }

    #[test]
    fn a_change_without_ttl_or_values_is_refused_before_any_call() {
        let mut without_ttl = change(ChangeAction::Upsert, &["a.example.net."]);
        without_ttl.ttl = None;
        let error = RecordSnapshot::desired(&without_ttl).expect_err("no ttl");
        assert!(error.to_string().contains("`ttl` is required"), "{error}");
        let error = RecordSnapshot::desired(&change(ChangeAction::Create, &[])).expect_err("no values");
        assert_eq!(
            error.to_string(),
            "CREATE API.example.com CNAME: `values` is empty; give at least one value"
        );
    }
}
