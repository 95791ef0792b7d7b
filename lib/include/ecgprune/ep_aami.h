/*
 * ep_aami.h - the ANSI/AAMI EC57 beat classes and the mapping of MIT beat
 * codes onto them, as de Chazal et al. (2004) use it:
 *   N = N L R e j,  S = A a J S,  V = V E,  F = F,  Q = / f Q.
 * (WFDB's bxb counts e and j as S when it reports SVEB statistics; this
 * library follows de Chazal and most later work.)
 */
#ifndef ECGPRUNE_EP_AAMI_H
#define ECGPRUNE_EP_AAMI_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ep_aami {
    EP_AAMI_NONE = -1,   /* not a beat */
    EP_AAMI_N = 0,
    EP_AAMI_S,
    EP_AAMI_V,
    EP_AAMI_F,
    EP_AAMI_Q,
    EP_AAMI_COUNT
} ep_aami;

/* AAMI class of an MIT annotation code, EP_AAMI_NONE for non-beats. */
ep_aami ep_aami_from_code(int code);
/* "N", "S", "V", "F", "Q" */
const char *ep_aami_name(ep_aami cls);
/* Inverse of ep_aami_name; EP_AAMI_NONE if not a class name. */
ep_aami ep_aami_from_name(const char *name);

#ifdef __cplusplus
}
#endif

#endif
