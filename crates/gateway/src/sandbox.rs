//! The sandbox: the built-in Daraja simulator, alone (`mpesa-gateway sandbox`) or in-process
//! (`serve --sandbox`), where a new user gets an API key with no setup.

use std::net::SocketAddr;

use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::cli::pay::SANDBOX_KEY_FILE;

const SANDBOX_KEY_NAME: &str = "sandbox";

/// Makes sure there is a sandbox API key, saves it where `pay` finds it, and tells the user how
/// to take a payment.
pub async fn announce(app: &App) -> anyhow::Result<()> {
    let state = app.state();
    let existing = match std::fs::read_to_string(SANDBOX_KEY_FILE) {
        Ok(k) => {
            let k = k.trim().to_owned();
            state.accounts.is_active_key(&k).await?.then_some(k)
        }
        Err(_) => None,
    };
    let key = match existing {
        Some(k) => k,
        None => {
            // The file is gone or names a key this database does not know: a new key, under a
            // name of its own. Names are unique (revoked keys keep theirs), and another
            // `serve --sandbox` sharing this database may be using its own key: nothing is
            // revoked here (`mpesa-gateway api-keys list|revoke` tidies up).
            let name = format!("{SANDBOX_KEY_NAME}-{}", crate::ids::random_token(8));
            let (secret, _) = state.accounts.create_api_key(&name, None).await?;
            write_private(SANDBOX_KEY_FILE, &secret)?;
            secret
        }
    };
    let addr = app.local_addr();
    // The banner goes to stdout, for the person at the terminal; logs go to stderr and never
    // carry the key.
    println!(
        "\n  mpesa-gateway is running in sandbox mode: payments go to the built-in Daraja simulator.\n\
         \n  API key (saved in ./{SANDBOX_KEY_FILE}): {key}\n\
         \n  Take a payment from a second terminal:\n      mpesa-gateway pay --phone 0708374149 --amount 10\n\
         \n  or with curl:\n      curl -s http://{addr}/api/v1/payments -H 'Authorization: Bearer {key}' \\\n           -H 'Content-Type: application/json' -d '{{\"phone\":\"0708374149\",\"amount\":10}}'\n\
         \n  Simulator: http://{addr}/sandbox/simulator   (requests it received: /sandbox/simulator/requests)\n",
    );
    Ok(())
}

fn write_private(path: &str, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path)?;
    f.write_all(content.as_bytes())?;
    f.write_all(b"\n")
}

/// `mpesa-gateway sandbox`: the simulator alone.
pub async fn run_standalone(listen: SocketAddr) -> anyhow::Result<()> {
    let mut config = daraja_sim::SimConfig::default();
    let var = |name| crate::config::lookup(crate::config::ProcessEnv, name);
    if let (Some(key), Some(secret)) = (var("MPESA_CONSUMER_KEY"), var("MPESA_CONSUMER_SECRET")) {
        config = config.accept_credentials(key, secret);
    }
    if let (Some(shortcode), Some(passkey)) =
        (var("MPESA_BUSINESS_SHORT_CODE"), var("MPESA_PASS_KEY"))
    {
        config = config.with_shortcode(daraja_sim::ShortcodeConfig::new(shortcode, Some(&passkey)));
    }
    let config = config.apply_env(|name| std::env::var(name).ok())?;
    let sim = daraja_sim::Simulator::new(config)?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    eprintln!(
        "Daraja simulator on http://{}/ (see /simulator)",
        listener.local_addr()?
    );
    let shutdown = CancellationToken::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        crate::app::shutdown_signal().await;
        trigger.cancel();
    });
    sim.serve(listener, shutdown.cancelled_owned()).await?;
    Ok(())
}
