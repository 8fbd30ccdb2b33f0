/* Boot deadlines and the KVM trial (bootwatch.h): what to do with a guest that is not healthy
 * yet, and which accelerator the next boot uses. */
#include <stdio.h>

#include "bootwatch.h"
#include "macro.h"

static const char *const kvm_state_names[_KVM_STATE_MAX] = {
        [KVM_UNKNOWN] = "unknown",
        [KVM_PROVEN] = "works",
        [KVM_SUSPECT] = "suspect",
        [KVM_UNUSABLE] = "unusable",
};

const char *kvm_state_to_string(KvmState s) {
        return s >= 0 && s < _KVM_STATE_MAX ? kvm_state_names[s] : NULL;
}

bool kvm_trial_use_kvm(const KvmTrial *t) {
        switch (t->setting) {
        case ACCEL_KVM:
                return true;
        case ACCEL_TCG:
                return false;
        default:
                return t->device && (t->state == KVM_UNKNOWN || t->state == KVM_PROVEN);
        }
}

bool kvm_trial_on_trial(const KvmTrial *t) {
        return t->setting == ACCEL_AUTO && (t->state == KVM_UNKNOWN || t->state == KVM_SUSPECT);
}

bool kvm_trial_failed(KvmTrial *t, const char *reason) {
        if (t->setting != ACCEL_AUTO || t->state != KVM_UNKNOWN)
                return false;
        t->state = KVM_SUSPECT;
        snprintf(t->reason, sizeof t->reason, "%s", reason ? reason : "a guest failed under KVM");
        return true;
}

bool kvm_trial_ready(KvmTrial *t, bool kvm) {
        if (t->setting != ACCEL_AUTO)
                return false;
        if (kvm) {
                /* Even while suspect: this guest proves KVM runs guests here. */
                if (t->state == KVM_UNKNOWN || t->state == KVM_SUSPECT) {
                        t->state = KVM_PROVEN;
                        t->reason[0] = 0;
                }
                return false;
        }
        if (t->state != KVM_SUSPECT)
                return false;
        t->state = KVM_UNUSABLE;
        return true;
}

bool kvm_trial_tcg_failed(KvmTrial *t) {
        if (t->setting != ACCEL_AUTO || t->state != KVM_SUSPECT)
                return false;
        t->state = KVM_UNKNOWN;
        t->reason[0] = 0;
        return true;
}

BootVerdict boot_judge(const BootObservation *o) {
        usec_t age = o->now > o->running_at ? o->now - o->running_at : 0;
        usec_t life = o->boot_timeout < BOOT_KVM_LIFE_USEC ? o->boot_timeout : BOOT_KVM_LIFE_USEC;
        bool kvm_on_trial = o->kvm && o->on_trial;

        if (kvm_on_trial && age >= life && !o->console_output)
                return BOOT_TRY_TCG;
        if (age >= o->boot_timeout)
                /* A KVM guest on trial that printed but never got healthy: TCG decides whose
                 * fault that is. */
                return kvm_on_trial ? BOOT_TRY_TCG : BOOT_TIMED_OUT;
        return BOOT_WAIT;
}

void boot_timeout_format(usec_t timeout, char out[static 32]) {
        usec_t ms = timeout / USEC_PER_MSEC;

        if (ms % 1000 == 0)
                snprintf(out, 32, "%llu s", (unsigned long long) (ms / 1000));
        else
                snprintf(out, 32, "%llu ms", (unsigned long long) ms);
}
