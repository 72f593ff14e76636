//! Tests of byte sizes and durations as config reads and shows them.

use serde::Deserialize;

use super::{byte_size, duration};

#[test]
fn sizes_read_and_show_as_written() {
    for (text, bytes) in [
        ("65536", 65_536),
        ("512KiB", 512 * 1024),
        ("2MiB", 2 * 1024 * 1024),
        ("1MB", 1_000_000),
        (" 3 GiB ", 3 * 1024 * 1024 * 1024),
    ] {
        assert_eq!(byte_size::parse(text), Some(bytes), "{text}");
    }
    for text in ["", "MiB", "2 PiB", "-1", "99999999999999999999GiB"] {
        assert_eq!(byte_size::parse(text), None, "{text}");
    }
    assert_eq!(byte_size::show(0), "0");
    assert_eq!(byte_size::show(8 * 1024 * 1024), "8MiB");
    assert_eq!(byte_size::show(64 * 1024), "64KiB");
    assert_eq!(byte_size::show(1000), "1000");
}

#[test]
fn durations_say_how_to_write_one() {
    #[derive(Debug, Deserialize)]
    struct Holder {
        #[serde(with = "duration")]
        wait: std::time::Duration,
    }
    let read = |text: &str| {
        serde_json::from_value::<Holder>(serde_json::json!({ "wait": text }))
            .map(|h| h.wait)
            .map_err(|e| e.to_string())
    };
    assert_eq!(read("250ms"), Ok(std::time::Duration::from_millis(250)));
    assert_eq!(read(" 10m "), Ok(std::time::Duration::from_secs(600)));
    let error = read("soon").expect_err("not a duration");
    assert!(error.contains("invalid duration `soon`"), "{error}");
    assert!(error.contains("`300s`"), "{error}");
}
