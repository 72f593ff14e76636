//! How many malloc arenas glibc may keep: one per core. `main` applies it
//! (`mallopt(M_ARENA_MAX)`) before any thread starts; this leaf decides.
//!
//! glibc gives each thread that allocates an arena of its own, up to eight
//! per core. Each arena keeps what it freed for its own thread, so the
//! router's resident memory depended on how many of its threads (the
//! runtime's workers, its blocking threads, the journal's writer and
//! checkpointer) happened to allocate during a burst: peak RSS in the
//! benchmark's scenario (b) ranged from 22 to 49 MiB over identical runs
//! with the same live heap of about 5.5 MiB. With one arena per core it
//! stays at 21–24 MiB in most runs (README, "Memory: one malloc arena per
//! core").

/// The arena cap to set, or `None` when the operator chose one already:
/// `MALLOC_ARENA_MAX` or `glibc.malloc.arena_max` in `GLIBC_TUNABLES`,
/// which glibc read when the process started, win.
pub fn cap(malloc_arena_max_set: bool, glibc_tunables: Option<&str>, cores: usize) -> Option<i32> {
    let tuned = glibc_tunables.is_some_and(|tunables| {
        tunables
            .split(':')
            .any(|setting| setting.split('=').next() == Some("glibc.malloc.arena_max"))
    });
    if malloc_arena_max_set || tuned {
        return None;
    }
    Some(i32::try_from(cores.max(1)).unwrap_or(i32::MAX))
}

#[cfg(test)]
#[path = "arenas_tests.rs"]
mod tests;
