/* The boot deadline and the KVM trial (control/bootwatch.c): which accelerator a boot uses,
 * how the trial moves, and what happens to a guest that is not healthy yet. */
#include "bootwatch.h"
#include "tap.h"

#define S USEC_PER_SEC

static KvmTrial trial(Accel setting, bool device) {
        return (KvmTrial) { .setting = setting, .device = device, .state = KVM_UNKNOWN };
}

static void test_use_kvm(void) {
        KvmTrial t;

        t = trial(ACCEL_KVM, false);
        ok(kvm_trial_use_kvm(&t), "accel = kvm: KVM, even without /dev/kvm (libvirt says why it fails)");
        ok(!kvm_trial_on_trial(&t), "accel = kvm: never on trial");
        ok(!kvm_trial_failed(&t, "x") && t.state == KVM_UNKNOWN, "accel = kvm: a failure changes nothing");
        t = trial(ACCEL_TCG, true);
        ok(!kvm_trial_use_kvm(&t), "accel = tcg: TCG, even with /dev/kvm");
        ok(!kvm_trial_on_trial(&t), "accel = tcg: never on trial");
        ok(!kvm_trial_ready(&t, false) && t.state == KVM_UNKNOWN, "accel = tcg: a TCG guest proves nothing");
        t = trial(ACCEL_AUTO, false);
        ok(!kvm_trial_use_kvm(&t), "auto without /dev/kvm: TCG");
        t = trial(ACCEL_AUTO, true);
        ok(kvm_trial_use_kvm(&t), "auto with /dev/kvm: KVM first");
        ok(kvm_trial_on_trial(&t), "auto: KVM is on trial until a guest comes up under it");
}

static void test_trial_unusable(void) {
        KvmTrial t = trial(ACCEL_AUTO, true);

        ok(kvm_trial_failed(&t, "no sign of life"), "a failure under KVM starts the suspicion");
        is_int(t.state, KVM_SUSPECT, "suspect");
        is_str(t.reason, "no sign of life", "with its reason");
        ok(!kvm_trial_use_kvm(&t), "suspect: the next boots use TCG");
        ok(kvm_trial_on_trial(&t), "suspect: still on trial (a KVM guest started earlier may still fail)");
        ok(!kvm_trial_failed(&t, "another"), "a second failure does not start it again");
        is_str(t.reason, "no sign of life", "and keeps the first reason");
        ok(kvm_trial_ready(&t, false), "TCG coming up while suspect: KVM unusable (reported once)");
        is_int(t.state, KVM_UNUSABLE, "unusable");
        ok(!kvm_trial_use_kvm(&t) && !kvm_trial_on_trial(&t), "unusable: TCG, and no longer on trial");
        ok(!kvm_trial_ready(&t, false), "a later TCG guest reports nothing new");
        is_str(t.reason, "no sign of life", "the reason stays for /v1/version");
}

static void test_trial_proven(void) {
        KvmTrial t = trial(ACCEL_AUTO, true);

        ok(!kvm_trial_ready(&t, true), "a KVM guest coming up reports nothing to mark");
        is_int(t.state, KVM_PROVEN, "and proves KVM");
        ok(kvm_trial_use_kvm(&t), "proven: KVM");
        ok(!kvm_trial_on_trial(&t), "proven: a failure is the guest's own from now on");
        ok(!kvm_trial_failed(&t, "x") && t.state == KVM_PROVEN, "so a failure does not make it suspect");

        t = trial(ACCEL_AUTO, true);
        kvm_trial_failed(&t, "slow image");
        ok(!kvm_trial_ready(&t, true), "suspect, then a KVM guest comes up (one started earlier)");
        is_int(t.state, KVM_PROVEN, "that proves KVM after all");
        is_str(t.reason, "", "and clears the suspicion's reason");
}

static void test_trial_image_at_fault(void) {
        KvmTrial t = trial(ACCEL_AUTO, true);

        kvm_trial_failed(&t, "guest crashed");
        ok(kvm_trial_tcg_failed(&t), "the TCG try fails too: the image may be at fault");
        is_int(t.state, KVM_UNKNOWN, "the trial starts over");
        ok(kvm_trial_use_kvm(&t), "and the next boot tries KVM again");
        ok(!kvm_trial_tcg_failed(&t), "a TCG failure while not suspect changes nothing");
}

static void test_judge(void) {
        BootObservation o = { .running_at = 1000 * S, .boot_timeout = 60 * S, .kvm = true, .on_trial = true };

        o.now = o.running_at + 9 * S;
        is_int(boot_judge(&o), BOOT_WAIT, "KVM on trial, silent for 9 s: wait");
        o.now = o.running_at + BOOT_KVM_LIFE_USEC;
        is_int(boot_judge(&o), BOOT_TRY_TCG, "KVM on trial, silent for 10 s: try TCG");
        o.console_output = true;
        is_int(boot_judge(&o), BOOT_WAIT, "KVM on trial with console output at 10 s: wait for health");
        o.now = o.running_at + 60 * S;
        is_int(boot_judge(&o), BOOT_TRY_TCG, "KVM on trial, printed but not healthy at the deadline: try TCG");
        o.on_trial = false;
        is_int(boot_judge(&o), BOOT_TIMED_OUT, "KVM proven, not healthy at the deadline: timed out");
        o.now = o.running_at + 59 * S;
        is_int(boot_judge(&o), BOOT_WAIT, "a second before the deadline: wait");
        o.console_output = false;
        o.now = o.running_at + 30 * S;
        is_int(boot_judge(&o), BOOT_WAIT, "KVM proven and silent for 30 s: no early verdict");

        o = (BootObservation) { .running_at = 1000 * S, .boot_timeout = 60 * S, .kvm = false, .on_trial = true };
        o.now = o.running_at + 30 * S;
        is_int(boot_judge(&o), BOOT_WAIT, "TCG, silent for 30 s while KVM is on trial: TCG is never judged by that");
        o.now = o.running_at + 60 * S;
        is_int(boot_judge(&o), BOOT_TIMED_OUT, "TCG at the deadline: timed out, not another TCG try");

        o = (BootObservation) { .running_at = 1000 * S, .boot_timeout = 5 * S, .kvm = true, .on_trial = true,
                                .console_output = true };
        o.now = o.running_at + 5 * S;
        is_int(boot_judge(&o), BOOT_TRY_TCG, "a deadline shorter than the first one still ends a KVM try");
        o.console_output = false;
        o.now = o.running_at + 4 * S;
        is_int(boot_judge(&o), BOOT_WAIT, "the first deadline is capped by the boot deadline, not before it");

        o = (BootObservation) { .now = 500 * S, .running_at = 1000 * S, .boot_timeout = 5 * S };
        is_int(boot_judge(&o), BOOT_WAIT, "a clock behind running_at: never a verdict");
}

static void test_format(void) {
        char out[32];

        boot_timeout_format(60 * S, out);
        is_str(out, "60 s", "whole seconds");
        boot_timeout_format(1500 * USEC_PER_MSEC, out);
        is_str(out, "1500 ms", "milliseconds");
}

int main(void) {
        test_use_kvm();
        test_trial_unusable();
        test_trial_proven();
        test_trial_image_at_fault();
        test_judge();
        test_format();
        is_str(kvm_state_to_string(KVM_PROVEN), "works", "state names");
        ok(kvm_state_to_string(_KVM_STATE_MAX) == NULL, "no name past the table");
        return tap_done();
}
