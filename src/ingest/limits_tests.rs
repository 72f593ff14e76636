//! Tests of the door's bounds.

use super::*;

#[test]
fn body_memory_is_reserved_and_given_back() {
    let buffer = BodyBuffer::new(10 * 1024);
    let mut first = buffer.reserve(4 * 1024).expect("room");
    let second = buffer.reserve(5 * 1024).expect("room");
    assert!(buffer.reserve(2 * 1024).is_none(), "1 KiB left");
    assert!(first.grow_to(5 * 1024));
    assert!(!first.grow_to(6 * 1024));
    drop(second);
    assert!(first.grow_to(10 * 1024));
    drop(first);
    assert!(buffer.reserve(10 * 1024).is_some());
    assert!(buffer.reserve(u64::MAX).is_none());
}

#[test]
fn connections_never_use_up_the_open_files() {
    assert_eq!(connection_cap(1024, None), Ok(1024));
    assert_eq!(connection_cap(1024, Some(1_048_576)), Ok(1024));
    let kept = FD_RESERVE as usize + ADMIN_MAX_CONNECTIONS + SHED_LINGERING;
    assert_eq!(connection_cap(1024, Some(1024)), Ok(1024 - kept));
    assert_eq!(connection_cap(10, Some(1024)), Ok(10));
    assert_eq!(connection_cap(1024, Some(100)), Err(100));
}
