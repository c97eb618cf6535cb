-- With `[signing] sm2 = true` an audit checkpoint is signed with SM2 (GB/T 32918, SM3) beside
-- Ed25519: the SM2 public key (uncompressed point, hex) and the signature ({key_id}:{r||s hex}).
-- Empty on checkpoints made with SM2 off. Adding columns updates no row.
ALTER TABLE audit_checkpoints ADD COLUMN sm2_public_key TEXT;
ALTER TABLE audit_checkpoints ADD COLUMN sm2_signature TEXT;
