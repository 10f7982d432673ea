//! What the broker trusts and where it may reach: the host-key policy and its known_hosts file,
//! the SSH algorithm lists (modern by default, legacy SHA-1 only on request), the device
//! allow-list, and the command allow/deny rules. Pure logic plus one file; no sockets.

mod algorithms;
mod commands;
mod host_keys;
mod jumps;
mod known_hosts;
mod reach;
mod tokens;

#[cfg(feature = "ssh")]
pub use algorithms::algorithms_for_key_type;
pub use algorithms::Algorithms;
pub use commands::{CommandRules, Rule};
pub use host_keys::HostKeyPolicy;
pub use jumps::{JumpHost, JumpRule, JumpRules, HOP_FIELDS};
pub use known_hosts::{HostKeySeen, KnownHosts};
pub use reach::HostList;
pub use tokens::{
    parse_expires, parse_list as parse_api_tokens, valid_name, ApiToken, Role, Tokens,
    DEFAULT_TOKEN_NAME, EXPIRES_FORMS, MAX_NAME,
};
