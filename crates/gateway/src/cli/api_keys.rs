//! `mpesa-gateway api-keys create|list|revoke`.

use anyhow::bail;
use mpesa_storage::Storage;

use crate::http::auth::generate_api_key;
use crate::ids::{eat_display, now_ms};

#[derive(Debug, clap::Subcommand)]
pub enum ApiKeysCommand {
    /// Create a key and print it once (only its hash is stored).
    Create {
        #[arg(long)]
        name: String,
    },
    List,
    /// Revoke a key by id or name.
    Revoke {
        id_or_name: String,
    },
}

pub async fn run(storage: &dyn Storage, command: ApiKeysCommand) -> anyhow::Result<()> {
    match command {
        ApiKeysCommand::Create { name } => {
            let name = name.trim();
            if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
                bail!("--name must be 1 to 64 printable characters");
            }
            let (secret, record) = generate_api_key(name);
            storage.create_api_key(&record).await.map_err(|e| match e {
                mpesa_storage::StorageError::Conflict(_) => {
                    anyhow::anyhow!("an active key named {name:?} exists already")
                }
                other => other.into(),
            })?;
            println!("{secret}");
            eprintln!(
                "API key {:?} ({}) created. It is shown only this once; store it now.",
                record.name, record.id
            );
        }
        ApiKeysCommand::List => {
            println!(
                "{:<36}  {:<20}  {:<10}  {:<24}  status",
                "id", "name", "prefix", "created (EAT)"
            );
            for k in storage.list_api_keys().await? {
                let status = match (k.revoked_at, k.last_used_at) {
                    (Some(at), _) => format!("revoked {}", eat_display(at)),
                    (None, Some(at)) => format!("active, last used {}", eat_display(at)),
                    (None, None) => "active, never used".into(),
                };
                println!(
                    "{:<36}  {:<20}  {:<10}  {:<24}  {status}",
                    k.id,
                    k.name,
                    k.prefix,
                    eat_display(k.created_at)
                );
            }
        }
        ApiKeysCommand::Revoke { id_or_name } => {
            if storage.revoke_api_key(&id_or_name, now_ms()).await? {
                println!("revoked {id_or_name}");
            } else {
                bail!("no active key with id or name {id_or_name:?}");
            }
        }
    }
    Ok(())
}
