//! Integration tests: the real server on an ephemeral port, a fresh database per test,
//! real WebSocket clients. Storage-touching tests run on SQLite always and on Postgres
//! when `TEST_POSTGRES_URL` is set.

mod helpers;
mod kit;
mod wire;

mod access;
mod awareness;
mod cluster;
mod convergence;
mod crash;
mod docs;
mod edge;
mod fault_big;
mod fault_crash;
mod fault_outage;
mod fault_races;
mod fault_slow;
mod fault_storm;
mod faults;
mod garbage;
mod interop;
mod lifecycle;
mod limits;
mod metrics;
mod operations;
mod proxy;
mod rfc6455;
mod storage;
mod sync;
mod tls;
mod versions;
mod web;
