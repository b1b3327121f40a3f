-- The message the Telegram bot keeps up to date for a payment started from a chat: the bot sends
-- it before the push and edits it as the payment moves (the outbox edits it to the final state).

CREATE TABLE telegram_status_messages (
    payment_id  TEXT NOT NULL,
    chat_id     INTEGER NOT NULL,
    message_id  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    CONSTRAINT pk_telegram_status_messages PRIMARY KEY (payment_id),
    CONSTRAINT fk_telegram_status_messages_payment FOREIGN KEY (payment_id) REFERENCES payments (id)
);
