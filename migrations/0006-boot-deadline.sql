-- aviary schema 6: every boot has a deadline, and every guest records the accelerator it ran on.

-- A service's own boot deadline in milliseconds; NULL: the daemon's boot_timeout setting.
ALTER TABLE services ADD COLUMN boot_timeout_ms INTEGER CHECK (boot_timeout_ms IS NULL OR boot_timeout_ms > 0);

-- How QEMU runs the instance's current or last guest: hardware virtualisation or software
-- emulation. NULL before the first boot.
ALTER TABLE instances ADD COLUMN accel TEXT CHECK (accel IS NULL OR accel IN ('kvm', 'tcg'));
