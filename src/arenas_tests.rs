use super::cap;

#[test]
fn one_arena_per_core_unless_the_operator_chose() {
    assert_eq!(cap(false, None, 2), Some(2));
    assert_eq!(cap(false, None, 16), Some(16));
    // A machine that reports no cores still gets an arena.
    assert_eq!(cap(false, None, 0), Some(1));
}

#[test]
fn the_operator_s_own_setting_wins() {
    assert_eq!(cap(true, None, 2), None);
    assert_eq!(cap(false, Some("glibc.malloc.arena_max=8"), 2), None);
    assert_eq!(
        cap(
            false,
            Some("glibc.malloc.tcache_count=0:glibc.malloc.arena_max=1"),
            2
        ),
        None
    );
}

#[test]
fn other_tunables_leave_the_cap_to_the_router() {
    assert_eq!(cap(false, Some("glibc.malloc.tcache_count=64"), 2), Some(2));
    // A name that only begins like the tunable is another one.
    assert_eq!(cap(false, Some("glibc.malloc.arena_max_x=1"), 2), Some(2));
    assert_eq!(cap(false, Some(""), 4), Some(4));
}
