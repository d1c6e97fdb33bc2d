//! `notify`: post a message to a Slack-compatible or generic webhook.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{KindInfo, Params, StepOutputs, step_outputs};

/// Parameters of `notify`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Parameters {
    /// The webhook URL, usually `{{secrets.slack_webhook}}`.
    pub webhook: String,
    /// The message text.
    pub message: String,
    /// `slack` posts `{"text": message}`; `json` posts the message with plan, run and step.
    #[serde(default)]
    pub format: NotifyFormat,
    /// Fail the step when the notification cannot be delivered (default: only warn).
    #[serde(default)]
    pub required: bool,
}

/// The body posted to the webhook.
#[derive(Clone, Copy, Debug, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NotifyFormat {
    /// `{"text": "..."}`, what Slack, Mattermost and Rocket.Chat accept.
    #[default]
    Slack,
    /// `{"plan", "run_id", "step", "message", "drill"}`.
    Json,
}

step_outputs! {
    /// Outputs of `notify`.
    pub struct NotifyOutputs {
        /// whether the webhook accepted the message
        pub delivered: bool,
    }
}

/// What `notify` declares.
pub const INFO: KindInfo = KindInfo {
    name: "notify",
    argv_parameters: &[],
    summary: "Post a message to a Slack-compatible or generic JSON webhook.",
    destructive: false,
    idempotent: false,
    undo: None,
    outputs: NotifyOutputs::DECLARED,
    preflight: "the webhook URL parses",
    notes: "A failed notification never fails the run unless `required: true`: the recovery matters \
            more than the message about it. It is never silent either: an undelivered message prints a \
            warning (`⚠ STEP: the webhook answered 500 ...; message not delivered`), journaled as \
            `step_warning` and listed in the report.",
    example: "- id: tell-incident-channel\n  kind: notify\n  with: { webhook: \"{{secrets.slack_webhook}}\", message: \"database restored\" }\n",
    parameters_schema: super::schema_of::<Parameters>,
    outputs_schema: super::schema_of::<NotifyOutputs>,
    describe,
    ..KindInfo::COMMON
};

/// `notify` in the kind table: how it runs, checks and undoes.
pub const KIND: super::Kind = super::Kind {
    info: &INFO,
    execute: |with, context| Box::pin(async move { run(super::parameters(with)?, context).await?.into_map() }),
    preflight: |with, _| Box::pin(async move { Ok(super::shared::url_preflight(&with, "webhook")) }),
    undo: None,
};

/// An error with its causes ("error sending request: connection refused"): the
/// outermost message alone does not tell the operator what went wrong. The URL is
/// already removed (it is often a secret).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The dry-run sentence.
#[must_use]
pub fn describe(with: &Params<'_>) -> String {
    format!("post \"{}\" to the {} webhook", with.text("message"), with.text_or("format", "slack"))
}

/// Posts the message. Undelivered messages fail the step only when `required`.
///
/// # Errors
/// Delivery failed and `required` is true.
pub async fn run(
    parameters: Parameters,
    context: &super::StepContext,
) -> Result<NotifyOutputs, super::StepError> {
    let body = match parameters.format {
        NotifyFormat::Slack => serde_json::json!({ "text": parameters.message }),
        NotifyFormat::Json => serde_json::json!({
            "plan": context.plan,
            "run_id": context.run_id,
            "step": context.step_id,
            "drill": context.drill,
            "message": parameters.message,
        }),
    };
    let result = async {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(15))
            .build()
            .map_err(|error| error.to_string())?;
        let response = client
            .post(&parameters.webhook)
            .json(&body)
            .send()
            .await
            .map_err(|error| error_chain(&error.without_url()))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("the webhook answered {}", response.status()))
        }
    }
    .await;
    let outputs = NotifyOutputs { delivered: result.is_ok() };
    match result {
        Ok(()) => Ok(outputs),
        // The webhook URL is often a secret: never put it in the message.
        Err(error) if parameters.required => {
            Err(super::StepError::Failed(format!("notification not delivered: {error}")))
        }
        // Not required: the run goes on, but the operator must know nobody was told.
        Err(error) => {
            context.progress.warn(format!("{error}; message not delivered"));
            Ok(outputs)
        }
    }
}
