//! Tests of the log throttle.

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
fn quiet_remembers_a_bounded_number_of_keys() {
    let warnings = Quiet::new(Duration::from_secs(30));
    let now = tokio::time::Instant::now();
    for n in 0..QUIET_KEYS + 10 {
        assert_eq!(warnings.admit(&format!("route-{n}"), now), Some(0));
    }
    let held = warnings.keys.lock().unwrap().len();
    assert!(held <= QUIET_KEYS, "{held}");
}
