//! One integration-test binary (links once). Modules: the self-tests of the fake SSH device (the `fake-device` crate), the API suite, and
//! the tests that run the real broker binary as a process.

mod abuse;
mod api;
mod child;
mod docs;
mod exec_forms;
mod fake_ssh_tests;
mod faults;
mod guard;
mod hardening;
mod idle;
mod jobs;
mod jump;
mod malformed;
mod metrics;
mod platforms;
mod policy;
mod probe;
mod process;
mod soak;
mod stdio;
mod support;
mod telnet;
mod tokens;
mod trust;
mod web;
