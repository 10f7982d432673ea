//! `netdev-broker demo`: the broker on loopback with a built-in fake Cisco IOS device that speaks
//! Telnet, a random API token, and the curl commands to try. For a newcomer without a switch.

use crate::config::Config;
use crate::secret::Secret;
use crate::server::{Broker, StartError};
use fake_device::{DeviceOptions, TelnetDevice};
use std::net::{SocketAddr, TcpListener};

pub struct DemoArgs {
    /// The broker's port (0: any free one).
    pub port: u16,
}

/// Start both, print how to use them, and run until `wait` returns (a signal).
pub fn run(a: &DemoArgs, wait: impl FnOnce()) -> Result<(), StartError> {
    let token = crate::util::random_id().map_err(|e| StartError::Internal(e.to_string()))?;
    let device = TelnetDevice::start(DeviceOptions {
        enable_secret: Some("cisco".into()),
        banner: Some("netdev-broker demo device: a fake Cisco IOS switch (Telnet)".into()),
        ..DeviceOptions::default()
    })
    .map_err(|e| StartError::io("cannot start the demo device", e))?;
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], a.port)))
        .map_err(|e| StartError::io(format!("cannot listen on 127.0.0.1:{}", a.port), e))?;
    let mut c = Config::default();
    c.live.api_token = Secret::new(token.clone());
    c.restart.state_dir = std::env::temp_dir();
    let broker = Broker::start_on(&c, listener)?;
    let addr = broker.addr();
    let dp = device.port();
    // The path this binary was started by, so the line below runs as printed (the binary is
    // often not on PATH: target/release/netdev-broker).
    let me = std::env::current_exe()
        .ok()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "netdev-broker".into());
    println!(
        "\
netdev-broker {v} demo
  broker:  http://{addr}   (token below; nothing listens beyond 127.0.0.1)
  device:  telnet 127.0.0.1 {dp}   user admin, password cisco, enable secret cisco

Try, in another terminal:

  HOST=http://{addr}; TOKEN={token}
  SESSION=$(curl -s -X POST $HOST/telnet-session -H \"X-API-Token: $TOKEN\" -H 'Content-Type: application/json' \\
    -d '{{\"host\":\"127.0.0.1\",\"port\":{dp},\"username\":\"admin\",\"password\":\"cisco\",\"enable_password\":\"cisco\"}}' | jq -r .session_id)
  curl -s $HOST/telnet-session/$SESSION/status -H \"X-API-Token: $TOKEN\" | jq .
  curl -s -X POST $HOST/telnet-session/$SESSION/exec -H \"X-API-Token: $TOKEN\" -H 'Content-Type: application/json' \\
    -d '{{\"commands\":[\"show version\",\"show ip interface brief\"]}}' | jq .
  curl -s -X POST $HOST/telnet-session/$SESSION/exec -H \"X-API-Token: $TOKEN\" -H 'Content-Type: application/json' \\
    -d '{{\"commands\":[{{\"cmd\":\"copy run start\",\"answer\":\"\\\\[confirm\\\\]\",\"send_newlines\":1}}]}}' | jq .
  curl -s -X POST $HOST/telnet-session/$SESSION/exec -H \"X-API-Token: $TOKEN\" -H 'Content-Type: application/json' \\
    -d '{{\"config\":[\"interface GigabitEthernet1/0/2\",\"description uplink\"],\"save\":true}}' | jq .
  curl -s -X DELETE $HOST/telnet-session/$SESSION -H \"X-API-Token: $TOKEN\" -w '%{{http_code}}\\n'

  {me} telnet-debug 127.0.0.1 admin cisco cisco {dp}

Ctrl-C stops both.",
        v = env!("CARGO_PKG_VERSION"),
    );
    use std::io::Write;
    let _ = std::io::stdout().flush();
    wait();
    println!("\nstopping: closing the broker's sessions and the demo device");
    broker.shutdown();
    device.stop();
    println!("stopped");
    Ok(())
}
