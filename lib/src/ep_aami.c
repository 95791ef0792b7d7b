/*
 * ep_aami.c - the ANSI/AAMI EC57 beat classes and the mapping of MIT beat
 * codes onto them, following de Chazal, O'Dwyer and Reilly (IEEE Trans
 * Biomed Eng 51(7), 2004):
 *   N = N L R e j,  S = A a J S,  V = V E,  F = F,  Q = / f Q.
 * Every other code (rhythm, noise, flutter waves, ...) is not a beat class.
 */
#include "ecgprune/ep_aami.h"

#include <string.h>

/* MIT codes of WFDB's ecgcodes.h that belong to an AAMI class. */
enum {
    MIT_NORMAL = 1, MIT_LBBB = 2, MIT_RBBB = 3, MIT_ABERR = 4, MIT_PVC = 5,
    MIT_FUSION = 6, MIT_NPC = 7, MIT_APC = 8, MIT_SVPB = 9, MIT_VESC = 10,
    MIT_NESC = 11, MIT_PACE = 12, MIT_UNKNOWN = 13, MIT_AESC = 34,
    MIT_PFUS = 38
};

static const char *const class_names[EP_AAMI_COUNT] = {
    "N", "S", "V", "F", "Q"
};

ep_aami ep_aami_from_code(int code)
{
    switch (code) {
    case MIT_NORMAL: case MIT_LBBB: case MIT_RBBB: case MIT_AESC:
    case MIT_NESC:
        return EP_AAMI_N;
    case MIT_APC: case MIT_ABERR: case MIT_NPC: case MIT_SVPB:
        return EP_AAMI_S;
    case MIT_PVC: case MIT_VESC:
        return EP_AAMI_V;
    case MIT_FUSION:
        return EP_AAMI_F;
    case MIT_PACE: case MIT_PFUS: case MIT_UNKNOWN:
        return EP_AAMI_Q;
    default:
        return EP_AAMI_NONE;
    }
}

const char *ep_aami_name(ep_aami cls)
{
    if (cls < 0 || cls >= EP_AAMI_COUNT)
        return "none";
    return class_names[cls];
}

ep_aami ep_aami_from_name(const char *name)
{
    for (int c = 0; c < EP_AAMI_COUNT; c++)
        if (strcmp(name, class_names[c]) == 0)
            return (ep_aami)c;
    return EP_AAMI_NONE;
}
