//! The project's fake SSH device (tests/it/fake_ssh.rs) as a standalone process, for the
//! benchmarks (benches/run): it holds thousands of sessions on one tokio runtime.
//!
//!     cargo run --release --example fake_device -- PORT PASSWORD [PERSONA]
//!
//! Prints `listening on 127.0.0.1:PORT` once ready, then runs until killed.

#[path = "../tests/it/fake_ssh.rs"]
mod fake_ssh;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: fake_device PORT PASSWORD [PERSONA]");
        std::process::exit(2);
    }
    let port: u16 = args[0].parse().unwrap_or_else(|_| {
        eprintln!("bad port {:?}", args[0]);
        std::process::exit(2)
    });
    let mut cfg = match args.get(2) {
        Some(p) => fake_ssh::DeviceConfig::persona(p),
        None => fake_ssh::DeviceConfig::default(),
    };
    cfg.password = args[1].clone();
    let dev = fake_ssh::FakeDevice::start_on(cfg, port);
    println!("listening on 127.0.0.1:{}", dev.port());
    loop {
        std::thread::park();
    }
}
