//! Tests of the door's bounds.

use super::*;

#[test]
fn a_window_logs_so_many_a_second_then_sums_up_once() {
    let mut window = Window {
        start: None,
        logged: 0,
        suppressed: 0,
        summary_due: false,
    };
    let t0 = Instant::now();
    assert_eq!(window.admit(t0, 2), Verdict::Log);
    assert_eq!(window.admit(t0, 2), Verdict::Log);
    assert_eq!(window.admit(t0, 2), Verdict::SuppressAndSum(t0 + SECOND));
    assert_eq!(window.admit(t0, 2), Verdict::Suppress);
    // A new second logs again; its overflow joins the pending summary.
    let t1 = t0 + SECOND;
    assert_eq!(window.admit(t1, 2), Verdict::Log);
    assert_eq!(window.admit(t1, 2), Verdict::Log);
    assert_eq!(window.admit(t1, 2), Verdict::Suppress);
    assert_eq!(window.take(), 3);
    assert_eq!(window.admit(t1, 2), Verdict::SuppressAndSum(t1 + SECOND));
    assert_eq!(window.take(), 1);
}

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

#[tokio::test]
async fn at_the_cap_the_connection_waiting_longest_makes_room() {
    let patient = Slots::new(2, Duration::from_secs(3600));
    let (Admission::Admitted(_a), Admission::Admitted(_b)) = (patient.admit(), patient.admit())
    else {
        panic!("room for two");
    };
    assert!(
        matches!(patient.admit(), Admission::Full),
        "nobody waited an hour"
    );

    let slots = Slots::new(2, Duration::ZERO);
    let (Admission::Admitted(a), Admission::Admitted(b)) = (slots.admit(), slots.admit()) else {
        panic!("room for two");
    };
    let working = a.activity.working();
    let Admission::Replaced(c) = slots.admit() else {
        panic!("b was waiting on its client");
    };
    assert!(b.evicted.is_cancelled());
    assert!(
        !a.evicted.is_cancelled(),
        "a connection being answered stays"
    );
    drop(working);
    drop(b);
    drop(c);
    assert!(
        matches!(slots.admit(), Admission::Admitted(_)),
        "c gave its place back"
    );
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
