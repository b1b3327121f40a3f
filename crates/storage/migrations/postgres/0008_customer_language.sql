-- payments.customer_language: the language a customer chose on the pay page (`en` or `sw`), in
-- which their receipts are written; NULL for payments of the other doors. It used to be kept in
-- `metadata` (`{"pay_page":{"lang":…}}`), which is the merchant's: a merchant's metadata could
-- set it. The pay page wrote exactly that text, so it is moved over as is.
ALTER TABLE payments ADD COLUMN customer_language TEXT NULL;
UPDATE payments SET customer_language = 'sw'
    WHERE source = 'pay_page' AND metadata = '{"pay_page":{"lang":"sw"}}';
UPDATE payments SET customer_language = 'en'
    WHERE source = 'pay_page' AND metadata = '{"pay_page":{"lang":"en"}}';
