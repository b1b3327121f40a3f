//! Migrations are plain SQL files, one folder per backend with the same file names
//! (`migrations/{sqlite,postgres,mysql}/NNNN_name.sql`), embedded in the binary.
//! Never edit an applied migration: sqlx refuses a changed checksum. Add a new file instead,
//! to all three folders.

use sqlx::SqlSafeStr as _;
use sqlx::migrate::{MigrateError, Migration, MigrationType, Migrator};

use crate::error::{DbError, StorageError};

/// One migration file: its name (`0001_initial.sql`) and its SQL.
pub(crate) type MigrationFile = (&'static str, &'static str);

macro_rules! migration_files {
    ($backend:literal: $($name:literal),+ $(,)?) => {
        &[$(($name, include_str!(concat!("../migrations/", $backend, "/", $name)))),+]
    };
}

pub(crate) const SQLITE: &[MigrationFile] = migration_files!(
    "sqlite": "0001_initial.sql",
    "0002_telegram_status_messages.sql",
    "0003_callbacks_outcome_kind_index.sql",
    "0004_health_probes_and_sign_in_failures.sql",
    "0005_c2b.sql",
    "0006_money_out.sql",
    "0007_payment_links.sql",
    "0008_customer_language.sql",
    "0009_receipt_checks.sql",
    "0010_settle_by_hand_lock.sql",
    "0011_lean_indexes.sql",
    "0012_initiator_requests_receipt_index.sql",
    "0013_api_key_creator.sql",
);
pub(crate) const POSTGRES: &[MigrationFile] = migration_files!(
    "postgres": "0001_initial.sql",
    "0002_telegram_status_messages.sql",
    "0003_callbacks_outcome_kind_index.sql",
    "0004_health_probes_and_sign_in_failures.sql",
    "0005_c2b.sql",
    "0006_money_out.sql",
    "0007_payment_links.sql",
    "0008_customer_language.sql",
    "0009_receipt_checks.sql",
    "0010_settle_by_hand_lock.sql",
    "0011_lean_indexes.sql",
    "0012_initiator_requests_receipt_index.sql",
    "0013_api_key_creator.sql",
);
pub(crate) const MYSQL: &[MigrationFile] = migration_files!(
    "mysql": "0001_initial.sql",
    "0002_telegram_status_messages.sql",
    "0003_callbacks_outcome_kind_index.sql",
    "0004_health_probes_and_sign_in_failures.sql",
    "0005_c2b.sql",
    "0006_money_out.sql",
    "0007_payment_links.sql",
    "0008_customer_language.sql",
    "0009_receipt_checks.sql",
    "0010_settle_by_hand_lock.sql",
    "0011_lean_indexes.sql",
    "0012_initiator_requests_receipt_index.sql",
    "0013_api_key_creator.sql",
);

/// `0001_initial.sql` → version 1, description `initial`.
fn version_and_description(name: &str) -> (i64, &str) {
    let stem = name.strip_suffix(".sql").unwrap_or(name);
    let (number, description) = stem.split_once('_').unwrap_or((stem, ""));
    let version = number
        .parse()
        .unwrap_or_else(|_| panic!("migration {name} must start with its number"));
    (version, description)
}

pub(crate) fn migrator(files: &'static [MigrationFile]) -> Migrator {
    Migrator::with_migrations(
        files
            .iter()
            .map(|(name, sql)| {
                let (version, description) = version_and_description(name);
                Migration::new(
                    version,
                    description.to_owned().into(),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

/// A failed migration: the database's own errors keep their meaning (unreachable is still
/// `Unavailable`); anything else is a failed migration.
pub(crate) fn map_migrate_error(
    e: MigrateError,
    map_error: fn(sqlx::Error) -> DbError,
) -> StorageError {
    match e {
        MigrateError::Execute(e) => map_error(e).into(),
        MigrateError::ExecuteMigration(e, version) => match map_error(e).error {
            StorageError::Database(msg) => {
                StorageError::Database(format!("migration {version} failed: {msg}"))
            }
            other => other,
        },
        other => StorageError::Database(format!("migration failed: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(files: &[MigrationFile]) -> Vec<&str> {
        files.iter().map(|(name, _)| *name).collect()
    }

    fn on_disk(backend: &str) -> Vec<String> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(backend);
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn the_three_backends_have_the_same_migrations_and_all_are_embedded() {
        assert_eq!(names(SQLITE), names(POSTGRES));
        assert_eq!(names(SQLITE), names(MYSQL));
        for (backend, files) in [("sqlite", SQLITE), ("postgres", POSTGRES), ("mysql", MYSQL)] {
            assert_eq!(
                on_disk(backend),
                names(files),
                "{backend}: every file on disk is embedded, in order"
            );
        }
        let versions: Vec<i64> = SQLITE
            .iter()
            .map(|(n, _)| version_and_description(n).0)
            .collect();
        assert!(
            versions.windows(2).all(|w| w[0] < w[1]),
            "versions increase: {versions:?}"
        );
    }
}
