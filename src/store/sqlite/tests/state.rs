//! The state integers on disk, and back.

use crate::store::sqlite::state::{DeliveryState, EventState, RouteState};

#[test]
fn states_keep_the_integers_journals_hold() {
    for (state, n) in [
        (EventState::Due, 0),
        (EventState::Routed, 1),
        (EventState::Dead, 2),
    ] {
        assert_eq!((state.sql(), EventState::from_sql(n)), (n, Some(state)));
        assert_eq!(state.to_string(), n.to_string());
    }
    for (state, n) in [
        (DeliveryState::Pending, 0),
        (DeliveryState::Delivered, 1),
        (DeliveryState::Dead, 2),
    ] {
        assert_eq!((state.sql(), DeliveryState::from_sql(n)), (n, Some(state)));
    }
    for (state, n) in [(RouteState::Retry, 0), (RouteState::Dead, 2)] {
        assert_eq!((state.sql(), RouteState::from_sql(n)), (n, Some(state)));
    }
    assert_eq!(RouteState::from_sql(1), None);
    assert_eq!(EventState::from_sql(3), None);
}

#[test]
fn a_state_reads_back_from_sqlite() {
    let c = rusqlite::Connection::open_in_memory().unwrap();
    let read: DeliveryState = c
        .query_row("SELECT ?1", [DeliveryState::Dead], |row| row.get(0))
        .unwrap();
    assert_eq!(read, DeliveryState::Dead);
    let unknown = c.query_row("SELECT 7", [], |row| row.get::<_, RouteState>(0));
    assert!(unknown.is_err());
}
