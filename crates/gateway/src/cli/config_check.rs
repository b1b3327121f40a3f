//! `mpesa-gateway config check`: the effective configuration, secrets masked, and a test of each
//! connection it names.

use std::time::Duration;

use secrecy::ExposeSecret;

use crate::config::Config;

/// Prints the report; returns whether every check passed.
pub async fn run(config: &Config) -> bool {
    println!("Effective configuration (secrets masked):");
    for (name, value) in config.describe() {
        println!("  {name:<28} {value}");
    }
    println!("\nChecks:");
    let mut all_ok = true;
    let mut report = |name: &str, result: Result<String, String>| {
        match &result {
            Ok(detail) => println!("  [ok]   {name}: {detail}"),
            Err(detail) => println!("  [FAIL] {name}: {detail}"),
        }
        all_ok &= result.is_ok();
    };

    let db = async {
        let storage =
            mpesa_storage::connect(config.database_url.expose_secret(), &Default::default())
                .await
                .map_err(|e| e.to_string())?;
        let version = storage.check_server().await.map_err(|e| e.to_string())?;
        storage.close().await;
        Ok::<_, String>(format!("{} {version}", storage.backend().as_str()))
    };
    report(
        "database",
        tokio::time::timeout(Duration::from_secs(10), db)
            .await
            .unwrap_or_else(|_| Err("no answer in 10 s".into())),
    );

    if config.sandbox {
        report(
            "daraja",
            Ok("the built-in simulator runs in-process with `serve --sandbox`".into()),
        );
    } else {
        daraja::install_crypto_provider();
        let result = match daraja::DarajaClient::new(crate::app::daraja_config(config)) {
            Ok(client) => {
                match tokio::time::timeout(Duration::from_secs(20), client.check_credentials())
                    .await
                {
                    Ok(Ok(())) => Ok(format!("OAuth token obtained from {}", client.base_url())),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("no answer in 20 s".into()),
                }
            }
            Err(e) => Err(e.to_string()),
        };
        report("daraja", result);
    }
    all_ok
}
