/*
 * ed_models.h - parsed models kept in memory for inference, by store id.
 *
 * Loading a model (safetensors parse) happens on the loop thread the
 * first time it is asked for; the network is then shared read-only by
 * the workers, each of which builds its own inferer.  Entries are
 * reference counted so that a model deleted or evicted while an
 * inference still runs is freed only when that inference returns.
 */
#ifndef ED_MODELS_H
#define ED_MODELS_H

#include <stdint.h>

#include "ecgprune/ep_net.h"
#include "ed_app.h"

/* Most models kept parsed at once (unreferenced ones are evicted). */
#define ED_MODELS_CACHE 8

int ed_models_create(ed_models **out);
void ed_models_free(ed_models *m);

/* The parsed network of model `id`, with a reference taken.  Returns 0,
 * 404 (no such model) or 500 with err filled. */
int ed_models_acquire(ed_app *app, int64_t id, const ep_net **net,
                      char *err, size_t err_size);
void ed_models_release(ed_app *app, const ep_net *net);
/* Forget model id (deleted). */
void ed_models_forget(ed_app *app, int64_t id);

/* sha256 of a buffer as 64 lower-case hex digits. */
int ed_models_sha256(const unsigned char *buf, size_t len, char hex[65]);

#endif
