//! Timing clients for benches/run. Every mode prints one JSON object with `samples_us`.
//!
//!   bench_client floor-open HOST PORT USER PASS N         bare libssh2: connect, auth, shell, prompt
//!   bench_client floor-exec HOST PORT USER PASS N CMD     bare libssh2: one command to the prompt
//!   bench_client http-open ADDR TOKEN HOST PORT USER PASS N   POST /session (then DELETE, untimed)
//!   bench_client http-exec ADDR TOKEN SESSION N CMD [PAUSE_MS]  POST /session/ID/exec, keep-alive
//!                                                         (PAUSE_MS between execs, untimed)
//!   bench_client http-get ADDR TOKEN PATH N                GET PATH, keep-alive
//!   bench_client tcp-rtt N                                 200 bytes to an echo process and back
//!                                                         over loopback (the floor of any hop)
//!
//! The floor is the simplest correct libssh2 client: blocking calls, one pty shell, read until
//! the output ends with the prompt `R1#` (or `R1>`). The HTTP client is a raw keep-alive HTTP/1.1 client
//! (what curl does with one connection), so the figures hold no client overhead beyond it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Instant;

const PROMPT: &[u8] = b"R1#";

fn die(msg: String) -> ! {
    eprintln!("bench_client: {msg}");
    std::process::exit(1)
}

fn read_to_prompt(ch: &mut ssh2::Channel, min_len: usize) -> Vec<u8> {
    let mut acc = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        let n = ch
            .read(&mut buf)
            .unwrap_or_else(|e| die(format!("read: {e}")));
        if n == 0 {
            die(format!("EOF after {:?}", String::from_utf8_lossy(&acc)));
        }
        acc.extend_from_slice(&buf[..n]);
        if acc.len() >= min_len && (acc.ends_with(PROMPT) || acc.ends_with(b"R1>")) {
            return acc;
        }
    }
}

fn ssh_shell(host: &str, port: u16, user: &str, pass: &str) -> (ssh2::Session, ssh2::Channel) {
    let tcp = TcpStream::connect((host, port)).unwrap_or_else(|e| die(format!("connect: {e}")));
    let _ = tcp.set_nodelay(true);
    let mut s = ssh2::Session::new().unwrap_or_else(|e| die(format!("session: {e}")));
    s.set_tcp_stream(tcp);
    // Every blocking call has a deadline, even in a benchmark.
    s.set_timeout(30_000);
    s.handshake()
        .unwrap_or_else(|e| die(format!("handshake: {e}")));
    s.userauth_password(user, pass)
        .unwrap_or_else(|e| die(format!("auth: {e}")));
    let mut ch = s
        .channel_session()
        .unwrap_or_else(|e| die(format!("channel: {e}")));
    ch.request_pty("vt100", None, Some((511, 24, 0, 0)))
        .unwrap_or_else(|e| die(format!("pty: {e}")));
    ch.shell().unwrap_or_else(|e| die(format!("shell: {e}")));
    read_to_prompt(&mut ch, 0);
    (s, ch)
}

fn http(stream: &mut TcpStream, req: &[u8]) -> (u16, Vec<u8>) {
    stream
        .write_all(req)
        .unwrap_or_else(|e| die(format!("http write: {e}")));
    let mut acc = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        if let Some(end) = acc.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&acc[..end]).to_string();
            let status: u16 = head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            while acc.len() < end + 4 + len {
                let n = stream
                    .read(&mut buf)
                    .unwrap_or_else(|e| die(format!("http read: {e}")));
                if n == 0 {
                    die("http: connection closed".into());
                }
                acc.extend_from_slice(&buf[..n]);
            }
            return (status, acc[end + 4..end + 4 + len].to_vec());
        }
        let n = stream
            .read(&mut buf)
            .unwrap_or_else(|e| die(format!("http read: {e}")));
        if n == 0 {
            die("http: connection closed".into());
        }
        acc.extend_from_slice(&buf[..n]);
    }
}

fn request(method: &str, path: &str, token: &str, body: &str) -> Vec<u8> {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: bench\r\nX-API-Token: {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| -> &str {
        a.get(i)
            .map(String::as_str)
            .unwrap_or_else(|| die(format!("argument {i} missing")))
    };
    let num = |i: usize| -> usize {
        arg(i)
            .parse()
            .unwrap_or_else(|_| die(format!("bad number {}", arg(i))))
    };
    let mut samples: Vec<u128> = Vec::new();
    match arg(0) {
        "floor-open" => {
            let (host, port, user, pass, n) = (arg(1), num(2) as u16, arg(3), arg(4), num(5));
            for _ in 0..n {
                let t = Instant::now();
                let (s, mut ch) = ssh_shell(host, port, user, pass);
                samples.push(t.elapsed().as_micros());
                let _ = ch.write_all(b"exit\n");
                let _ = ch.close();
                let _ = s.disconnect(None, "bye", None);
            }
        }
        "floor-exec" => {
            let (host, port, user, pass, n, cmd) =
                (arg(1), num(2) as u16, arg(3), arg(4), num(5), arg(6));
            let (_s, mut ch) = ssh_shell(host, port, user, pass);
            let line = format!("{cmd}\n");
            for _ in 0..n {
                let t = Instant::now();
                ch.write_all(line.as_bytes())
                    .unwrap_or_else(|e| die(format!("write: {e}")));
                read_to_prompt(&mut ch, cmd.len() + PROMPT.len() + 2);
                samples.push(t.elapsed().as_micros());
            }
        }
        "http-open" => {
            let (addr, token, host, port, user, pass, n) =
                (arg(1), arg(2), arg(3), num(4), arg(5), arg(6), num(7));
            let mut c = TcpStream::connect(addr).unwrap_or_else(|e| die(format!("{addr}: {e}")));
            let _ = c.set_nodelay(true);
            let body = format!(
                r#"{{"host":{},"port":{port},"username":{},"password":{},"device_type":"cisco_ios"}}"#,
                json_str(host),
                json_str(user),
                json_str(pass)
            );
            for _ in 0..n {
                let t = Instant::now();
                let (status, resp) = http(&mut c, &request("POST", "/session", token, &body));
                samples.push(t.elapsed().as_micros());
                if status != 201 {
                    die(format!("open: {status} {}", String::from_utf8_lossy(&resp)));
                }
                let v: serde_json::Value = serde_json::from_slice(&resp).unwrap_or_default();
                let id = v["session_id"].as_str().unwrap_or_default().to_string();
                let (st, _) = http(
                    &mut c,
                    &request("DELETE", &format!("/session/{id}"), token, ""),
                );
                if st != 204 {
                    die(format!("close: {st}"));
                }
            }
        }
        "http-exec" => {
            let (addr, token, id, n, cmd) = (arg(1), arg(2), arg(3), num(4), arg(5));
            let pause = std::time::Duration::from_millis(a.get(6).map_or(0, |_| num(6) as u64));
            let mut c = TcpStream::connect(addr).unwrap_or_else(|e| die(format!("{addr}: {e}")));
            let _ = c.set_nodelay(true);
            let req = request(
                "POST",
                &format!("/session/{id}/exec"),
                token,
                &format!(r#"{{"commands":[{}]}}"#, json_str(cmd)),
            );
            for _ in 0..n {
                let t = Instant::now();
                let (status, resp) = http(&mut c, &req);
                samples.push(t.elapsed().as_micros());
                if status != 200 {
                    die(format!("exec: {status} {}", String::from_utf8_lossy(&resp)));
                }
                std::thread::sleep(pause);
            }
        }
        "http-get" => {
            let (addr, token, path, n) = (arg(1), arg(2), arg(3), num(4));
            let mut c = TcpStream::connect(addr).unwrap_or_else(|e| die(format!("{addr}: {e}")));
            let _ = c.set_nodelay(true);
            let req = request("GET", path, token, "");
            for _ in 0..n {
                let t = Instant::now();
                let (status, _) = http(&mut c, &req);
                samples.push(t.elapsed().as_micros());
                if status != 200 {
                    die(format!("GET {path}: {status}"));
                }
            }
        }
        "tcp-rtt" => {
            // The echo side is a child process (this binary, mode tcp-echo), as the broker is.
            let n = num(1);
            let exe = std::env::current_exe().unwrap_or_else(|e| die(format!("{e}")));
            let mut echo = std::process::Command::new(exe)
                .arg("tcp-echo")
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| die(format!("{e}")));
            // It prints the port it listens on.
            let mut line = String::new();
            if let Some(o) = echo.stdout.take() {
                let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(o), &mut line);
            }
            let port: u16 = line
                .trim()
                .parse()
                .unwrap_or_else(|_| die(format!("tcp-echo said {line:?}")));
            let mut c =
                TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| die(format!("{e}")));
            let _ = c.set_nodelay(true);
            let msg = [b'x'; 200];
            let mut buf = [0u8; 4096];
            for _ in 0..n {
                let t = Instant::now();
                c.write_all(&msg).unwrap_or_else(|e| die(format!("{e}")));
                let mut got = 0;
                while got < msg.len() {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => die("echo closed".into()),
                        Ok(k) => got += k,
                    }
                }
                samples.push(t.elapsed().as_micros());
            }
            drop(c);
            let _ = echo.wait();
        }
        "tcp-echo" => {
            let l =
                std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| die(format!("{e}")));
            println!("{}", l.local_addr().map(|a| a.port()).unwrap_or_default());
            let _ = std::io::stdout().flush();
            let (mut c, _) = l.accept().unwrap_or_else(|e| die(format!("{e}")));
            let _ = c.set_nodelay(true);
            let mut buf = [0u8; 4096];
            loop {
                match c.read(&mut buf) {
                    Ok(0) | Err(_) => std::process::exit(0),
                    Ok(k) => {
                        if c.write_all(&buf[..k]).is_err() {
                            std::process::exit(0);
                        }
                    }
                }
            }
        }
        other => die(format!("unknown mode {other}")),
    }
    println!("{}", serde_json::json!({ "samples_us": samples }));
}
