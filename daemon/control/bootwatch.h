/* Boot deadlines and the KVM trial: pure decisions, no I/O, unit-tested
 * (tests/unit/test-bootwatch.c). The controller feeds them what it observed of a booting
 * guest and acts on the verdict.
 *
 * Why a trial and not a probe at start: /dev/kvm may open and even run a tiny probe guest on
 * a host where a real kernel fails (nested, paravirtualised KVM that cannot emulate one
 * instruction the kernel uses). Only a real guest coming up under KVM proves that KVM works;
 * until one has, a guest that fails under KVM is given its next try under TCG, and TCG
 * coming up where KVM did not is what marks KVM unusable. docs/design/guests.md. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "timeutil.h"

/* A KVM guest that printed nothing on its console and answered no health check this long
 * after its start shows no sign of life. A kernel under working KVM prints within a second;
 * TCG is never judged by this. Capped by the boot deadline. */
#define BOOT_KVM_LIFE_USEC (10 * USEC_PER_SEC)

typedef enum KvmState {
        KVM_UNKNOWN,  /* accel = auto: no guest has come up under KVM yet; boots try KVM */
        KVM_PROVEN,   /* a guest came up under KVM: failures from now on are the image's */
        KVM_SUSPECT,  /* a guest failed under KVM: boots use TCG until one comes up (or fails) */
        KVM_UNUSABLE, /* TCG came up where KVM did not: TCG for good (kept in STATE/kvm-unusable) */
        _KVM_STATE_MAX,
} KvmState;

const char *kvm_state_to_string(KvmState s); /* "unknown" "works" "suspect" "unusable" */

typedef enum Accel {
        ACCEL_AUTO,
        ACCEL_KVM,
        ACCEL_TCG,
} Accel;

/* What aviaryd knows of KVM on this host. */
typedef struct KvmTrial {
        Accel setting;
        bool device;      /* /dev/kvm is a character device that opens */
        KvmState state;
        char reason[512]; /* SUSPECT and UNUSABLE: why KVM failed */
} KvmTrial;

/* Whether the next boot runs under KVM. */
bool kvm_trial_use_kvm(const KvmTrial *t);
/* Whether a failure of a guest running under KVM may be KVM's fault, so its next try is TCG. */
bool kvm_trial_on_trial(const KvmTrial *t);
/* A guest failed under KVM while on trial (REASON says how): true when this starts the
 * suspicion (log it once). */
bool kvm_trial_failed(KvmTrial *t, const char *reason);
/* A guest came up (ready) under KVM or TCG. True when this marks KVM unusable: TCG came up
 * while KVM was suspect. */
bool kvm_trial_ready(KvmTrial *t, bool kvm);
/* A TCG guest failed before it came up while KVM was suspect: the image may be at fault, not
 * KVM; the trial starts over. True when that changed the state. */
bool kvm_trial_tcg_failed(KvmTrial *t);

typedef struct BootObservation {
        usec_t now, running_at;     /* same clock */
        usec_t boot_timeout;        /* the deadline, after running_at */
        bool kvm;                   /* the guest runs under KVM */
        bool on_trial;              /* kvm_trial_on_trial() */
        bool console_output;        /* it printed on its console since it started (unknown: true) */
} BootObservation;

typedef enum BootVerdict {
        BOOT_WAIT,      /* nothing to do yet */
        BOOT_TRY_TCG,   /* no sign of life under KVM on trial: stop it, boot it again under TCG */
        BOOT_TIMED_OUT, /* the deadline passed: stop it, an exit like any other */
} BootVerdict;

/* For a guest still booting (not yet healthy). */
BootVerdict boot_judge(const BootObservation *o);

/* "60 s", "1500 ms": a deadline in a stop reason. OUT needs 32 bytes. */
void boot_timeout_format(usec_t timeout, char out[static 32]);
