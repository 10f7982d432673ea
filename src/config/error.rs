//! Why a configuration could not be loaded or used: the key it is about (when there is one), the
//! message printed (`netdev-broker: <message>` on stderr, exit 2), and the I/O cause as
//! `source()`. No HTTP: a config error never reaches a client.

use std::fmt;

#[derive(Debug)]
pub struct ConfigError {
    /// The config key (or command-line flag) at fault, when there is one.
    pub key: Option<String>,
    /// The message as printed, without the I/O cause (which `Display` appends).
    pub message: String,
    pub source: Option<std::io::Error>,
}

impl ConfigError {
    /// A problem with no single key (the file as a whole, the command line).
    pub fn new(message: impl Into<String>) -> ConfigError {
        ConfigError {
            key: None,
            message: message.into(),
            source: None,
        }
    }

    /// `config key '<key>': <message>`.
    pub fn key(key: &str, message: impl fmt::Display) -> ConfigError {
        ConfigError::about(key, format!("config key '{key}': {message}"))
    }

    /// A sentence about `key`, printed as written.
    pub fn about(key: &str, sentence: impl Into<String>) -> ConfigError {
        ConfigError {
            key: Some(key.to_string()),
            message: sentence.into(),
            source: None,
        }
    }

    /// `<context>: <I/O error>`, the error kept as `source()`.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> ConfigError {
        ConfigError {
            key: None,
            message: context.into(),
            source: Some(source),
        }
    }

    pub fn with_key(mut self, key: &str) -> ConfigError {
        self.key = Some(key.to_string());
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(s) = &self.source {
            write!(f, ": {s}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_printed_as_before() {
        let e = ConfigError::key("host", "must not be empty");
        assert_eq!(e.to_string(), "config key 'host': must not be empty");
        assert_eq!(e.key.as_deref(), Some("host"));
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let e = ConfigError::io("cannot read config file /x", io);
        assert_eq!(
            e.to_string(),
            "cannot read config file /x: entity not found"
        );
        assert!(std::error::Error::source(&e).is_some());
    }
}
