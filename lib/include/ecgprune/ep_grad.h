/*
 * ep_grad.h - backward passes of the layers, on raw arrays in the layouts
 * ep_net.h documents ([batch][channels][length] activations, conv weights
 * [out][in][kernel]).  Training chains them over a whole graph; tests
 * check each against finite differences.
 *
 * Parameter gradients (dw, db, dgamma, dbeta) are always added to what
 * the caller's arrays hold, so several batch items (or several steps of
 * gradient accumulation) sum up; clear them first.  Input gradients (dx)
 * are added too, because a layer read by two consumers gets the sum of
 * both consumers' gradients.
 */
#ifndef ECGPRUNE_EP_GRAD_H
#define ECGPRUNE_EP_GRAD_H

#include <stddef.h>
#include <stdint.h>

#include "ecgprune/ep_net.h"
#include "ecgprune/ep_ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Convolution, one batch item: x is in_ch x in_len, dy out_ch x out_len.
 *   dw += dy * im2col(x)^T,  db += sum_t dy,  dx += col2im(w^T * dy).
 * dw, db and dx may be NULL (not wanted).  work holds
 * ep_grad_conv_work_floats(g) floats.
 */
size_t ep_grad_conv_work_floats(const ep_conv_geom *g);
void ep_grad_conv(const ep_conv_geom *g, const float *x, const float *w,
                  const float *dy, float *dw, float *db, float *dx,
                  float *work);

/*
 * Batch normalisation in training mode over batch x channels x len, given
 * the input x and the batch statistics the forward pass used (mean and
 * inv_std = 1/sqrt(var + eps) per channel, biased variance):
 *   xhat = (x - mean) * inv_std,  y = gamma * xhat + beta,
 *   dgamma += sum dy * xhat,  dbeta += sum dy,
 *   dx += gamma * inv_std * (dy - mean(dy) - xhat * mean(dy * xhat)),
 * means taken over batch x len.  dx may be NULL.
 */
void ep_grad_bn(int batch, int channels, int len, const float *x,
                const float *mean, const float *inv_std, const float *gamma,
                const float *dy, float *dgamma, float *dbeta, float *dx);

/* ReLU: dx += dy where the forward output y is positive. */
void ep_grad_relu(size_t n, const float *y, const float *dy, float *dx);

/*
 * Wavelet layers, one batch item.  The periodised orthogonal DWT is an
 * orthogonal matrix, so its adjoint is its inverse:
 *   DWT  (x: channels x len -> 2*channels x len/2):  dx += IDWT(dy);
 *   IDWT (x: 2*channels x half_len -> channels x 2*half_len): dx += DWT(dy).
 * work holds channels * len floats (the transformed gradient).
 */
void ep_grad_dwt(ep_wavelet w, int channels, int len, const float *dy,
                 float *dx, float *work);
void ep_grad_idwt(ep_wavelet w, int channels, int half_len, const float *dy,
                  float *dx, float *work);

/*
 * Concatenation, one batch item: input j's gradient is its block of dy's
 * channels.  dx_part (part_channels x len) += dy channels
 * [first_channel, first_channel + part_channels).
 */
void ep_grad_concat_part(int first_channel, int part_channels, int len,
                         const float *dy, float *dx_part);

/*
 * Class-weighted softmax cross-entropy with per-sample targets, one batch
 * item: logits n_classes x len, target[t] in 0..n_classes-1.  Loss of the
 * item = sum_t weight[target[t]] * -log softmax(logits)[target[t]][t];
 * the function returns it (in double) and writes
 *   dlogits = scale * weight[target[t]] * (softmax(logits)[.][t] - onehot)
 * (overwritten, not added).  The caller chooses scale, usually 1 / the
 * sum of the weights of all targets in the batch, which makes the batch
 * loss the weighted mean as PyTorch's CrossEntropyLoss(weight=) defines
 * it.  weight NULL means every class weighs 1.
 */
double ep_grad_softmax_xent(int n_classes, int len, const float *logits,
                            const uint8_t *target, const float *weight,
                            double scale, float *dlogits);

/*
 * Softmax against soft targets (a teacher's class probabilities), one
 * batch item: logits and probs n_classes x len, each column of probs
 * summing to 1.  Returns the item's summed Kullback-Leibler divergence
 * sum_t sum_c probs * (log probs - log softmax(logits)), which is 0 when
 * the two agree, and writes
 *   dlogits = scale * (softmax(logits) - probs)
 * (overwritten), the gradient of the cross-entropy and of the divergence
 * alike.
 */
double ep_grad_softmax_soft_xent(int n_classes, int len, const float *logits,
                                 const float *probs, double scale,
                                 float *dlogits);

#ifdef __cplusplus
}
#endif

#endif
