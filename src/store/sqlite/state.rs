//! The states of the journal's rows and the integers SQLite keeps for
//! them. Every query that names a state takes it from here: bound as a
//! parameter ([`ToSql`]), or written into the statement's text
//! ([`Display`](std::fmt::Display)) where a partial index must match it.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

/// Where an event is in routing (`events.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventState {
    /// Due for a routing pass at its `next_attempt_at`.
    Due,
    /// Routed: every route it matched has a record or a route-level dead
    /// letter.
    Routed,
    /// Cannot be routed at all (its body cannot be parsed): a dead letter.
    Dead,
}

/// Where one (record, sink) delivery is (`deliveries.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// Due at its `next_attempt_at`.
    Pending,
    Delivered,
    /// Given up: a dead letter until replayed.
    Dead,
}

/// Where a route whose record could not be built is
/// (`route_failures.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteState {
    /// Tried again when its event is next routed.
    Retry,
    /// Given up: a route-level dead letter until replayed or rerouted.
    Dead,
}

/// The integers are those of the journals written before the enums: they
/// are on disk and must not change.
macro_rules! sql_state {
    ($state:ident { $($variant:ident = $value:literal),+ $(,)? }) => {
        impl $state {
            /// The integer SQLite keeps.
            pub const fn sql(self) -> i64 {
                match self {
                    $($state::$variant => $value,)+
                }
            }

            /// The state an integer from the journal stands for.
            pub fn from_sql(value: i64) -> Option<$state> {
                match value {
                    $($value => Some($state::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $state {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}", self.sql())
            }
        }

        impl ToSql for $state {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.sql()))
            }
        }

        impl FromSql for $state {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                let n = value.as_i64()?;
                $state::from_sql(n).ok_or(FromSqlError::OutOfRange(n))
            }
        }
    };
}

sql_state!(EventState {
    Due = 0,
    Routed = 1,
    Dead = 2
});
sql_state!(DeliveryState {
    Pending = 0,
    Delivered = 1,
    Dead = 2
});
sql_state!(RouteState { Retry = 0, Dead = 2 });
