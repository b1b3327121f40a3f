//! `mpesa-gateway api-keys create|list|revoke`.

use crate::accounts::Accounts;
use crate::ids::eat_display;
use anyhow::bail;

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

pub async fn run(accounts: &Accounts, command: ApiKeysCommand) -> anyhow::Result<()> {
    match command {
        ApiKeysCommand::Create { name } => {
            let name = name.trim();
            if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
                bail!("--name must be 1 to 64 printable characters");
            }
            let (secret, record) =
                accounts
                    .create_api_key(name, None)
                    .await
                    .map_err(|e| match e {
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
            for k in accounts.api_keys().await? {
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
            if accounts.revoke_api_key_by_id_or_name(&id_or_name).await? {
                println!("revoked {id_or_name}");
            } else {
                bail!("no active key with id or name {id_or_name:?}");
            }
        }
    }
    Ok(())
}
