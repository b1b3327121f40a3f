//! Runs the Daraja simulator alone, like `mpesa-gateway sandbox --listen ADDR`:
//!
//! ```sh
//! cargo run -p daraja-sim --example sandbox -- 127.0.0.1:8089
//! ```
//!
//! Settings come from `DARAJA_SIM_*` variables (see the crate README); Ctrl-C stops it.

use daraja_sim::{SimConfig, Simulator};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8089".to_owned());
    let config = SimConfig::default().apply_env(|name| std::env::var(name).ok())?;
    let sim = Simulator::new(config)?;
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!(
        "Daraja simulator on http://{} (inspect: /simulator)",
        listener.local_addr()?
    );
    sim.serve(listener, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
