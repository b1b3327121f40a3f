-- The message the Telegram bot keeps up to date for a payment started from a chat: the bot sends
-- it before the push and edits it as the payment moves (the outbox edits it to the final state).
-- Safe to run again (see 0001).

CREATE TABLE IF NOT EXISTS telegram_status_messages (
    payment_id  VARCHAR(64) NOT NULL,
    chat_id     BIGINT NOT NULL,
    message_id  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (payment_id),
    CONSTRAINT fk_telegram_status_messages_payment FOREIGN KEY (payment_id) REFERENCES payments (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
