//! Tests of the byte budget: shares within the limit, growth, giving back.

use super::*;

#[test]
fn shares_stay_within_the_limit_and_are_given_back_when_dropped() {
    let budget = ByteBudget::new(100);
    let first = budget.take(60).expect("fits");
    assert!(budget.take(41).is_none(), "past the limit");
    let mut second = budget.take(40).expect("fits exactly");
    assert_eq!(budget.used(), 100);
    drop(first);
    assert_eq!(budget.used(), 40);
    assert!(budget.add_to(&mut second, 60), "grows within the limit");
    assert_eq!((second.bytes(), budget.used()), (100, 100));
    assert!(!budget.add_to(&mut second, 1), "not past it");
    assert_eq!((second.bytes(), budget.used()), (100, 100), "unchanged");
    drop(second);
    assert_eq!(budget.used(), 0);
}
