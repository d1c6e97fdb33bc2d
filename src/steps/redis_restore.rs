//! `redis.restore`: put an RDB file in place and restart and verify Redis.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{KindInfo, OutputInfo, Params};
use crate::duration::HumanDuration;

/// Parameters of `redis.restore`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Parameters {
    /// The RDB file to restore, usually `{{steps.fetch.outputs.path}}`.
    pub rdb: String,
    /// Redis's data directory (`CONFIG GET dir`), where `dump.rdb` goes.
    pub dir: String,
    /// The server, `redis://[:password@]host:port`.
    pub url: String,
    /// The command that starts Redis again after `SHUTDOWN NOSAVE`.
    pub start: Vec<String>,
    /// The restored server must hold at least this many keys.
    pub expect_keys: Option<u64>,
    /// Give up waiting for Redis after this long.
    #[serde(default = "default_deadline")]
    pub deadline: HumanDuration,
}

fn default_deadline() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(120))
}

/// What `redis.restore` declares.
pub const INFO: KindInfo = KindInfo {
    summary: "Put an RDB file in place for Redis: SHUTDOWN NOSAVE, replace dump.rdb, start, verify keys.",
    destructive: true,
    idempotent: true,
    undo: None,
    outputs: &[OutputInfo { name: "keys", description: "keys in the restored server (DBSIZE)" }],
    preflight: "the server answers PING and the data directory exists",
    notes: "",
    example: "- id: restore-redis\n  kind: redis.restore\n  with: { rdb: \"{{steps.fetch-rdb.outputs.path}}\", dir: /data, url: \"redis://127.0.0.1:6379\", start: [redis-server, /etc/redis.conf] }\n",
};

/// The dry-run sentence.
#[must_use]
pub fn describe(with: &Params<'_>) -> String {
    let mut sentence = format!(
        "stop Redis at {} without saving, replace {}/dump.rdb with {}, start it with `{}`",
        with.text("url"),
        with.text("dir"),
        with.text("rdb"),
        with.text("start")
    );
    if with.has("expect_keys") {
        sentence.push_str(&format!(" and check it holds at least {} keys", with.text("expect_keys")));
    }
    sentence
}
