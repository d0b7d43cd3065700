//! CRM connectors (Bitrix24, signed webhooks, amoCRM) behind one trait, with retriable vs permanent failures.
