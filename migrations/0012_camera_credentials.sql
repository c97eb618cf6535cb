-- Camera credentials are kept apart from the source URL, sealed (XChaCha20-Poly1305) with the
-- key in data/keys/credentials.key: `v1:` + base64(nonce ‖ ciphertext), or NULL for none.
-- URLs of older databases that still carry user info are split at the next start
-- (capture::rooms::move_inline_credentials), which needs the key and so cannot run here.
ALTER TABLE room_sources ADD COLUMN credentials TEXT;
