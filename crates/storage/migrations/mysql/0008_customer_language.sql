-- payments.customer_language: the language a customer chose on the pay page (`en` or `sw`), in
-- which their receipts are written; NULL for payments of the other doors. It used to be kept in
-- `metadata` (`{"pay_page":{"lang":…}}`), which is the merchant's: a merchant's metadata could
-- set it. The pay page wrote exactly that text, so it is moved over as is. (MySQL commits DDL
-- at once: the column is added only if a first attempt has not added it.)
SET @add_column = IF(
    EXISTS (SELECT 1 FROM information_schema.columns
            WHERE table_schema = DATABASE() AND table_name = 'payments'
              AND column_name = 'customer_language'),
    'DO 0',
    'ALTER TABLE payments ADD COLUMN customer_language VARCHAR(8) NULL');
PREPARE add_column FROM @add_column;
EXECUTE add_column;
DEALLOCATE PREPARE add_column;

UPDATE payments SET customer_language = 'sw'
    WHERE source = 'pay_page' AND metadata = '{"pay_page":{"lang":"sw"}}';
UPDATE payments SET customer_language = 'en'
    WHERE source = 'pay_page' AND metadata = '{"pay_page":{"lang":"en"}}';
