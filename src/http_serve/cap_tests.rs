//! Tests of the connection cap.

use super::*;

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
