//! Fake cloud control planes backed by real local containers (see `tests/fakes/README.md`).

pub mod daytona;
pub mod e2b;
mod faults;
pub mod modal;
mod upgrade;
pub mod vercel;
