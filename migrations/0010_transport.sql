-- How each source's media travels (auto: TCP first, then UDP), and what last worked for it.
ALTER TABLE room_sources ADD COLUMN transport TEXT NOT NULL DEFAULT 'auto';
ALTER TABLE room_sources ADD COLUMN learned_transport TEXT;
ALTER TABLE recordings ADD COLUMN transport TEXT NOT NULL DEFAULT 'auto';
-- rtspu:// once meant "media over UDP"; it is now the camera's rtsp:// URL with transport udp.
UPDATE room_sources SET transport = 'udp', url = 'rtsp://' || substr(url, 9) WHERE url LIKE 'rtspu://%';
UPDATE recordings SET transport = 'udp', url = 'rtsp://' || substr(url, 9) WHERE url LIKE 'rtspu://%';

