//! The dashboard's pages. maud escapes every interpolated value, so a hostname, a command or a
//! device's answer containing `<script>` is shown as text.

use super::Login;
use crate::policy::Role;
use crate::session::guard::GuardState;
use crate::session::jobs::JobState;
use crate::session::Registry;
use crate::util::iso8601;
use maud::{html, Markup, DOCTYPE};

pub const STYLE: &str = include_str!("style.css");

fn page(title: &str, refresh: bool, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if refresh {
                    meta http-equiv="refresh" content="5";
                }
                title { (title) " · netdev-broker" }
                link rel="stylesheet" href="/ui/style.css";
            }
            body { (body) }
        }
    }
}

fn header(login: &Login, sessions: usize) -> Markup {
    html! {
        header {
            h1 { a href="/" { "netdev-broker" } }
            span.meta { "v" (env!("CARGO_PKG_VERSION")) " · " (plural(sessions, "session")) }
            form.logout method="post" action="/logout" {
                span.user { (login.user) }
                " " small.role { (login.role.name()) }
                input type="hidden" name="csrf" value=(login.csrf);
                button type="submit" { "Log out" }
            }
        }
    }
}

pub fn login(message: Option<&str>, username: &str) -> Markup {
    page(
        "Log in",
        false,
        html! {
            main.login {
                h1 { "netdev-broker" }
                @if let Some(m) = message {
                    p.error role="alert" { (m) }
                }
                form method="post" action="/login" {
                    label for="username" { "Username" }
                    @if username.is_empty() {
                        input #username name="username" type="text" autocomplete="username" required autofocus;
                    } @else {
                        input #username name="username" type="text" autocomplete="username" required value=(username);
                    }
                    label for="password" { "Password" }
                    @if username.is_empty() {
                        input #password name="password" type="password" autocomplete="current-password" required;
                    } @else {
                        input #password name="password" type="password" autocomplete="current-password" required autofocus;
                    }
                    button type="submit" { "Log in" }
                }
            }
        },
    )
}

pub fn message(title: &str, text: &str, login: &Login, sessions: usize) -> Markup {
    page(
        title,
        false,
        html! {
            (header(login, sessions))
            main {
                h2 { (title) }
                p { (text) }
                p { a href="/" { "Back to the sessions" } }
            }
        },
    )
}

/// "45 s", "12 min 03 s", "3 h 04 min", "2 d 03 h".
pub fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d} d {h:02} h")
    } else if h > 0 {
        format!("{h} h {m:02} min")
    } else if m > 0 {
        format!("{m} min {s:02} s")
    } else {
        format!("{s} s")
    }
}

fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

/// What the dashboard shows of a session's change guard (read under its lock, rendered after).
struct GuardView {
    state: &'static str,
    armed: bool,
    seconds_left: u64,
    deadline: Option<String>,
    device: String,
    fired_by: Option<&'static str>,
    ended_at: Option<String>,
}

fn guard_view(h: &crate::session::SessionHandle) -> Option<GuardView> {
    let g = h.guard.lock();
    let g = g.as_ref()?;
    let armed = g.state == GuardState::Armed;
    let device = match &g.device {
        None => "none".to_string(),
        Some(d) if d.confirmed => format!("{} min, confirmed", d.minutes),
        Some(d) if d.confirm_error.is_some() => {
            format!("{} min, confirm failed: the device reverts", d.minutes)
        }
        Some(d) if d.confirm_pending => format!("{} min, confirming", d.minutes),
        Some(d) => format!("{} min from {}", d.minutes, time_of(d.armed_at)),
    };
    Some(GuardView {
        state: g.state.name(),
        armed,
        seconds_left: g.seconds_left().ceil() as u64,
        deadline: armed.then(|| time_of(g.deadline_at())),
        device,
        fired_by: g.fired_by,
        ended_at: g.ended_at.map(time_of),
    })
}

/// What the dashboard shows of a session's running job: its command now (masked), how long it
/// has run and the bytes it received so far.
struct JobView {
    id: String,
    command: Option<String>,
    secs: u64,
    bytes: u64,
}

fn running_job(reg: &Registry, h: &crate::session::SessionHandle) -> Option<JobView> {
    // The list's lock is let go before a job's own is taken (the session thread holds only the
    // job's while it records output).
    let jobs = h.jobs.lock().list();
    let j = jobs.into_iter().find(|j| j.state() == JobState::Running)?;
    let i = j.inner.lock();
    let (command, started, bytes) = match &i.current {
        Some(c) => (Some(reg.mask(&c.command)), Some(c.started), c.bytes),
        None => (None, i.started, i.stream.end()),
    };
    Some(JobView {
        id: j.id.clone(),
        command,
        secs: started.map_or(0, |s| s.elapsed().as_secs()),
        bytes,
    })
}

fn job_line(j: &JobView) -> Markup {
    html! {
        small.job title=(format!("job {}", j.id)) {
            "running "
            @if let Some(c) = &j.command { code { (c) } } @else { "a job" }
            " · " span.elapsed { (duration(j.secs)) }
            " · " span.bytes { (j.bytes) " bytes" }
        }
    }
}

/// `14:31:45` (UTC).
fn time_of(t: std::time::SystemTime) -> String {
    iso8601(t).get(11..19).unwrap_or("").to_string()
}

fn guard_state(g: &GuardView) -> Markup {
    let class = match g.state {
        "armed" | "rolling_back" => "guard armed",
        "rollback_failed" | "rollback_impossible" => "guard failed",
        _ => "guard ended",
    };
    html! {
        span class=(class) { "guard " (g.state) }
        @if g.armed {
            " " span.countdown { (g.seconds_left) " s left" }
        }
    }
}

/// Sessions in the order the dashboard shows them: oldest first.
fn sessions(reg: &Registry) -> Vec<std::sync::Arc<crate::session::SessionHandle>> {
    let mut list = reg.list();
    list.sort_by_key(|h| h.info.created);
    list
}

pub fn dashboard(reg: &Registry, login: &Login) -> Markup {
    let list = sessions(reg);
    // Change guards: armed (and rolling back) first, soonest deadline first; then ended ones.
    let mut guards: Vec<_> = list
        .iter()
        .filter_map(|h| guard_view(h).map(|g| (h.clone(), g)))
        .collect();
    guards.sort_by_key(|(_, g)| (!g.armed && g.state != "rolling_back", g.seconds_left));
    page(
        "Sessions",
        true,
        html! {
            (header(login, list.len()))
            main {
                @if !guards.is_empty() {
                    section.guards {
                        h2 { "Change guards" }
                        div.scroll { table.sessions.guards {
                            thead {
                                tr {
                                    th { "Session" } th { "Host" } th { "State" } th { "Seconds left" }
                                    th { "Deadline" } th { "Device timer" } th { "Ended" }
                                }
                            }
                            tbody {
                                @for (h, g) in &guards {
                                    @let id = &h.info.id;
                                    tr.guard data-session-id=(id) {
                                        td.id title=(id) { code { (id.get(..8).unwrap_or(id)) } }
                                        td.host { (h.info.host) ":" (h.info.port) br; small { (h.info.device_type) } }
                                        td.state { (guard_state(g)) }
                                        td.countdown { @if g.armed { strong { (g.seconds_left) } " s" } @else { "–" } }
                                        td { @if let Some(d) = &g.deadline { time { (d) } } @else { "–" } }
                                        td { (g.device) }
                                        td {
                                            @if let Some(e) = &g.ended_at { time { (e) } }
                                            @if let Some(f) = g.fired_by { br; small { "fired by " (f) } }
                                        }
                                    }
                                }
                            }
                        } }
                    }
                }
                div.toolbar {
                    h2 { "Sessions" }
                    @if !list.is_empty() && login.role != Role::Viewer {
                        a.button.danger href="/ui/close-all" { "Close all…" }
                    }
                }
                @if list.is_empty() {
                    p.empty { "No open sessions." }
                } @else {
                    div.scroll { table.sessions {
                        thead {
                            tr {
                                th { "Session" } th { "Owner" } th { "Protocol" } th { "Host" } th { "Device type" }
                                th { "Mode" } th { "Age" } th { "Idle" } th { "State" }
                                th { "Last commands" } th {}
                            }
                        }
                        tbody {
                            @for h in &list {
                                @let st = h.state();
                                @let id = &h.info.id;
                                @let short = id.get(..8).unwrap_or(id);
                                tr.session id=(format!("s-{short}")) data-session-id=(id) {
                                    td.id title=(id) { code { (short) } }
                                    td.owner { (h.info.owner.as_deref().unwrap_or("–")) }
                                    td { (h.info.protocol) }
                                    td.host { (h.info.host) ":" (h.info.port) br; small { (h.info.username) } }
                                    td {
                                        (h.info.device_type)
                                        @if h.info.platform != h.info.device_type {
                                            br; small { "profile " (h.info.platform) }
                                        }
                                    }
                                    td { (st.mode) }
                                    td { (duration(h.info.created.elapsed().as_secs())) }
                                    td { (duration(st.last_used.elapsed().as_secs())) }
                                    td.state {
                                        @if !st.alive {
                                            span.dead { "dead" }
                                            @if let Some(r) = &st.dead_reason { br; small { (r) } }
                                        } @else if h.busy() {
                                            span.busy { "busy" }
                                            @if let Some(j) = running_job(reg, h) {
                                                br; (job_line(&j))
                                            }
                                        } @else {
                                            span.alive { "alive" }
                                        }
                                        @if h.info.session_timeout.is_zero() {
                                            br; small { "never reaped" }
                                        }
                                        @if let Some(g) = guard_view(h) {
                                            br; (guard_state(&g))
                                        }
                                    }
                                    td.recent {
                                        @if st.recent.is_empty() {
                                            small { "none yet" }
                                        } @else {
                                            ol {
                                                @for c in st.recent.iter().rev() {
                                                    li class=(format!("cmd {}", c.status)) title=(c.command) {
                                                        time { (iso8601(c.at).get(11..19).unwrap_or("")) }
                                                        " " span.outcome { (c.status) " · " (c.elapsed_ms) " ms" }
                                                        " " code { (c.command) }
                                                    }
                                                }
                                            }
                                        }
                                    }
                                    td {
                                        // A viewer gets no close control at all.
                                        @if login.role != Role::Viewer {
                                            @if h.guard_armed() {
                                                small { "change guard armed: end it before closing" }
                                            } @else {
                                                form method="post" action=(format!("/ui/close/{id}")) {
                                                    input type="hidden" name="csrf" value=(login.csrf);
                                                    button.danger type="submit" { "Close" }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    } }
                }
                p.note { "Refreshes every 5 seconds. Times are UTC." }
            }
        },
    )
}

/// The confirmation lists the sessions and posts exactly their ids: a session opened after the
/// operator looked is not closed by this form.
pub fn confirm_close_all(reg: &Registry, login: &Login) -> Markup {
    let (list, guarded): (Vec<_>, Vec<_>) =
        sessions(reg).into_iter().partition(|h| !h.guard_armed());
    let ids: Vec<&str> = list.iter().map(|h| h.info.id.as_str()).collect();
    page(
        "Close all sessions",
        false,
        html! {
            (header(login, list.len()))
            main.confirm {
                h2 {
                    @match list.len() {
                        0 => "No session can be closed",
                        1 => "Close this session?",
                        n => (format!("Close all {n} sessions?")),
                    }
                }
                p {
                    "Every session is logged out and closed, safety sessions (never reaped) too. "
                    "Playbooks that hold one of them get 404 on their next request."
                }
                @if !guarded.is_empty() {
                    p.warn {
                        "Left open: " (plural(guarded.len(), "session")) " with an armed change guard ("
                        @for (i, h) in guarded.iter().enumerate() {
                            @if i > 0 { ", " }
                            code { (h.info.id.get(..8).unwrap_or(&h.info.id)) }
                        }
                        "). Confirm, roll back or disarm the guard first."
                    }
                }
                ul {
                    @for h in &list {
                        li {
                            code { (h.info.id.get(..8).unwrap_or(&h.info.id)) } " "
                            (h.info.username) "@" (h.info.host) ":" (h.info.port) " (" (h.info.protocol) ", " (h.info.device_type) ")"
                            @if h.info.session_timeout.is_zero() { " " strong.safety { "safety session (never reaped)" } }
                        }
                    }
                }
                @if !list.is_empty() {
                form method="post" action="/ui/close-all" {
                    input type="hidden" name="csrf" value=(login.csrf);
                    input type="hidden" name="confirm" value="yes";
                    input type="hidden" name="ids" value=(ids.join(","));
                    button.danger type="submit" { "Close all sessions" }
                    " "
                    a.button href="/" { "Cancel" }
                }
                } @else {
                    a.button href="/" { "Back" }
                }
            }
        },
    )
}
