use super::*;

#[test]
fn remembers_what_was_written() {
    let mut written = Written::default();
    written.insert("evt_1:orders");
    assert!(written.contains("evt_1:orders"));
    assert!(!written.contains("evt_2:orders"));
    assert!(!written.contains("evt_1:order"));
}

#[test]
fn an_id_written_twice_is_kept_once() {
    let mut written = Written::default();
    written.insert("evt_1:orders");
    written.insert("evt_1:orders");
    assert_eq!(written.len(), 1);
}

#[test]
fn forgets_the_oldest_beyond_remembered() {
    let mut written = Written::default();
    for i in 0..=REMEMBERED {
        written.insert(&format!("evt_{i}:orders"));
    }
    assert_eq!(written.len(), REMEMBERED);
    assert!(!written.contains("evt_0:orders"));
    assert!(written.contains("evt_1:orders"));
    assert!(written.contains(&format!("evt_{REMEMBERED}:orders")));
}

#[test]
fn its_queue_stays_within_remembered() {
    let mut written = Written::default();
    for i in 0..REMEMBERED * 3 {
        written.insert(&format!("evt_{i}:orders"));
    }
    assert!(written.order.capacity() < 2 * REMEMBERED);
    assert_eq!(written.ids.len(), REMEMBERED);
}
