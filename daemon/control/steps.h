/* The steps of a rollout that act outside aviaryd: a check (requests to each canary guest,
 * straight to its address, never through the public listener) and a webhook (the rollout's
 * status POSTed to an operator's URL, signed; a gate polls it until it says yes). They run on
 * the control loop through libcurl's multi interface (control/webhook.c) and never block it;
 * the rollout driver asks for their outcome on each pass, and control/rollout.c decides what
 * the outcome means. Also the fire-and-forget hooks at a rollout's end (onAbort, onSuccess). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "strategy.h"

typedef struct StepRunner StepRunner;

typedef enum StepOutcome {
        STEP_OUTCOME_RUNNING,   /* started (or waiting for its next poll) */
        STEP_OUTCOME_PASSED,
        STEP_OUTCOME_FAILED,
} StepOutcome;

#define STEP_MAX_GUESTS 64

/* What a step runs against. */
typedef struct StepJob {
        int64_t rollout;
        int64_t step;                  /* its index: a new index is a new run */
        StepKind kind;                 /* STEP_CHECK or STEP_WEBHOOK */
        const CheckSpec *check;
        const WebhookSpec *webhook;
        struct {
                char ip[16];
                char instance[64];
        } guest[STEP_MAX_GUESTS];      /* a check's targets: the ready canary guests */
        size_t n_guests;
        unsigned port;                 /* ...on this port */
        const char *body;              /* a webhook's body: the rollout's status JSON */
} StepJob;

/* E: the control loop. KEY_PATH: the file with the webhooks' signing key (made, 0600, with 32
 * random bytes in hex when missing). */
int step_runner_new(sd_event *e, const char *key_path, StepRunner **ret);
/* Cancels everything in flight. */
StepRunner *step_runner_free(StepRunner *r);

/* The outcome of JOB's step, started when this (rollout, step) is new. DETAIL gets what
 * failed (the request and the answer), or how it passed. */
StepOutcome step_runner_poll(StepRunner *r, const StepJob *job, char *detail, size_t size);
/* Drops what is known of the steps of ROLLOUT (it ended, or was retried). */
void step_runner_forget(StepRunner *r, int64_t rollout);

/* A hook at a rollout's end: BODY POSTed to W, signed, with W's retries; nobody waits for it.
 * EVENT names it in X-Aviary-Event. A failure is logged. */
int step_runner_hook(StepRunner *r, const WebhookSpec *w, const char *event, const char *body);

/* The signing key (hex), for tests and docs; NULL when it could not be made. */
const char *step_runner_key(const StepRunner *r);
