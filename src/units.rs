//! Units written in `routes.yaml`: durations (`300s`, `10m`, `250ms`) and
//! byte sizes (`2MiB`, `512KiB`, `65536`), as serde `with` helpers, and
//! [`byte_size::show`] to write a size back the way the config does.
//!
//! A leaf: it imports nothing of the crate, so sinks and any other module
//! may use it without depending on the config.

/// Durations written as `300s`, `1.5s`, `10m`, `72h`, `250ms`.
pub mod duration {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(text.trim()).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration `{text}`: {e} (write e.g. `300s`, `10m`, `250ms`)"
            ))
        })
    }
}

pub mod opt_duration {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(text) => humantime::parse_duration(text.trim())
                .map(Some)
                .map_err(|e| {
                    serde::de::Error::custom(format!(
                        "invalid duration `{text}`: {e} (write e.g. `300s`, `10m`, `250ms`)"
                    ))
                }),
        }
    }
}

/// Sizes written as `2MiB`, `512KiB`, `1MB`, or a plain number of bytes.
pub mod byte_size {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(n),
            Raw::Text(text) => parse(&text).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "invalid size `{text}` (write e.g. `2MiB`, `512KiB`, `65536`)"
                ))
            }),
        }
    }

    pub fn parse(text: &str) -> Option<u64> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (digits, unit) = text.split_at(split);
        let n: u64 = digits.parse().ok()?;
        let mult: u64 = match unit.trim() {
            "" | "B" => 1,
            "KB" | "kB" => 1000,
            "KiB" => 1024,
            "MB" => 1000 * 1000,
            "MiB" => 1024 * 1024,
            "GB" => 1000 * 1000 * 1000,
            "GiB" => 1024 * 1024 * 1024,
            _ => return None,
        };
        n.checked_mul(mult)
    }

    /// A size as it would be written in the config: `8MiB`, `64KiB`, `1000`.
    pub fn show(n: u64) -> String {
        match n {
            0 => "0".to_owned(),
            n if n % (1024 * 1024 * 1024) == 0 => format!("{}GiB", n / (1024 * 1024 * 1024)),
            n if n % (1024 * 1024) == 0 => format!("{}MiB", n / (1024 * 1024)),
            n if n % 1024 == 0 => format!("{}KiB", n / 1024),
            n => n.to_string(),
        }
    }
}

#[cfg(test)]
#[path = "units_tests.rs"]
mod tests;
