//! The floor as its own OS process, so that its memory is its own (the gateway is started
//! through mpesa-harness).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

pub struct Floor {
    child: std::process::Child,
    pub base: String,
}

impl Floor {
    /// The floor binary on a free port (it prints its address).
    pub async fn start(binary: &Path) -> anyhow::Result<Floor> {
        let mut child = Command::new(binary)
            .arg("127.0.0.1:0")
            .stdout(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("floor stdout")?).read_line(&mut line)?;
        Ok(Floor {
            child,
            base: format!("http://{}", line.trim()),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
