//! Unit tests of the `stdout` sink.

use super::*;

#[tokio::test]
async fn delivers() {
    let sink = StdoutSink::build(&StdoutConfig::default());
    let record = Encoded {
        id: "evt_1:r".into(),
        body: bytes::Bytes::from_static(b"{}"),
    };
    assert!(sink.deliver(&record).await.is_ok());
}
