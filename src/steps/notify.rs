//! `notify`: post a message to a Slack-compatible or generic webhook.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{KindInfo, OutputInfo, Params};

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

/// What `notify` declares.
pub const INFO: KindInfo = KindInfo {
    summary: "Post a message to a Slack-compatible or generic JSON webhook.",
    destructive: false,
    idempotent: false,
    undo: None,
    outputs: &[OutputInfo { name: "delivered", description: "whether the webhook accepted the message" }],
    preflight: "the webhook URL parses",
    notes: "A failed notification never fails the run unless `required: true`: the recovery matters \
            more than the message about it.",
    example: "- id: tell-incident-channel\n  kind: notify\n  with: { webhook: \"{{secrets.slack_webhook}}\", message: \"database restored\" }\n",
};

/// The dry-run sentence.
#[must_use]
pub fn describe(with: &Params<'_>) -> String {
    format!("post \"{}\" to the {} webhook", with.text("message"), with.text_or("format", "slack"))
}
