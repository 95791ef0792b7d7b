/*
 * ep_grad.c - backward passes of the layers on raw arrays: convolution
 * through im2col and two sgemms, training-mode batch normalisation, ReLU,
 * the wavelet transforms (their adjoints are their inverses), concatenation
 * and the class-weighted softmax cross-entropy that starts the chain.
 */
#include "ecgprune/ep_grad.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

size_t ep_grad_conv_work_floats(const ep_conv_geom *g)
{
    return (size_t)g->in_ch * (size_t)g->kernel * (size_t)g->out_len;
}

void ep_grad_conv(const ep_conv_geom *g, const float *x, const float *w,
                  const float *dy, float *dw, float *db, float *dx,
                  float *work)
{
    int rows = g->in_ch * g->kernel, o, t;

    /* dw (out x rows) += dy (out x T) * col^T (T x rows). */
    if (dw != NULL) {
        ep_conv_im2col(g, x, work);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g->out_ch,
                    rows, g->out_len, 1.0f, dy, g->out_len, work,
                    g->out_len, 1.0f, dw, rows);
    }

    if (db != NULL)
        for (o = 0; o < g->out_ch; o++) {
            const float *row = dy + (size_t)o * g->out_len;
            float sum = 0.0f;

            for (t = 0; t < g->out_len; t++)
                sum += row[t];
            db[o] += sum;
        }

    /* dcol (rows x T) = w^T (rows x out) * dy (out x T), then scatter the
     * columns back onto the input samples they were read from. */
    if (dx == NULL)
        return;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, rows, g->out_len,
                g->out_ch, 1.0f, w, rows, dy, g->out_len, 0.0f, work,
                g->out_len);
    ep_conv_col2im(g, work, dx);
}

void ep_grad_bn(int batch, int channels, int len, const float *x,
                const float *mean, const float *inv_std, const float *gamma,
                const float *dy, float *dgamma, float *dbeta, float *dx)
{
    double count = (double)batch * len;
    int c, n, t;

    for (c = 0; c < channels; c++) {
        double sum_dy = 0.0, sum_dy_xhat = 0.0, mean_dy, mean_dy_xhat;
        float m = mean[c], s = inv_std[c], k;

        /* The two reductions over batch x len the formula needs. */
        for (n = 0; n < batch; n++) {
            size_t off = ((size_t)n * channels + c) * (size_t)len;

            for (t = 0; t < len; t++) {
                double g = dy[off + t];

                sum_dy += g;
                sum_dy_xhat += g * ((x[off + t] - m) * s);
            }
        }
        dgamma[c] += (float)sum_dy_xhat;
        dbeta[c] += (float)sum_dy;
        if (dx == NULL)
            continue;

        /* dx = gamma * inv_std * (dy - mean(dy) - xhat * mean(dy xhat)) */
        mean_dy = sum_dy / count;
        mean_dy_xhat = sum_dy_xhat / count;
        k = gamma[c] * s;
        for (n = 0; n < batch; n++) {
            size_t off = ((size_t)n * channels + c) * (size_t)len;

            for (t = 0; t < len; t++) {
                float xhat = (x[off + t] - m) * s;

                dx[off + t] += k * (dy[off + t] - (float)mean_dy -
                                    xhat * (float)mean_dy_xhat);
            }
        }
    }
}

void ep_grad_relu(size_t n, const float *y, const float *dy, float *dx)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (y[i] > 0.0f)
            dx[i] += dy[i];
}

static void add_floats(size_t n, const float *src, float *dst)
{
    size_t i;

    for (i = 0; i < n; i++)
        dst[i] += src[i];
}

void ep_grad_dwt(ep_wavelet w, int channels, int len, const float *dy,
                 float *dx, float *work)
{
    ep_dwt_inverse(w, channels, len / 2, dy, work);
    add_floats((size_t)channels * len, work, dx);
}

void ep_grad_idwt(ep_wavelet w, int channels, int half_len, const float *dy,
                  float *dx, float *work)
{
    ep_dwt_forward(w, channels, 2 * half_len, dy, work);
    add_floats((size_t)channels * 2 * half_len, work, dx);
}

void ep_grad_concat_part(int first_channel, int part_channels, int len,
                         const float *dy, float *dx_part)
{
    add_floats((size_t)part_channels * len,
               dy + (size_t)first_channel * len, dx_part);
}

/* log sum_c exp(logits[c][t]), shifted by the largest logit so that
 * exp() cannot overflow. */
static double log_partition(int n_classes, int len, const float *logits,
                            int t)
{
    double top = logits[t], sum = 0.0;
    int c;

    for (c = 1; c < n_classes; c++)
        if (logits[(size_t)c * len + t] > top)
            top = logits[(size_t)c * len + t];
    for (c = 0; c < n_classes; c++)
        sum += exp(logits[(size_t)c * len + t] - top);
    return top + log(sum);
}

double ep_grad_softmax_xent(int n_classes, int len, const float *logits,
                            const uint8_t *target, const float *weight,
                            double scale, float *dlogits)
{
    double loss = 0.0;
    int c, t;

    for (t = 0; t < len; t++) {
        double log_z = log_partition(n_classes, len, logits, t), w;
        int y = target[t];

        w = weight != NULL ? weight[y] : 1.0;
        loss += w * (log_z - logits[(size_t)y * len + t]);
        for (c = 0; c < n_classes; c++) {
            double p = exp(logits[(size_t)c * len + t] - log_z);

            dlogits[(size_t)c * len + t] =
                (float)(scale * w * (p - (c == y ? 1.0 : 0.0)));
        }
    }
    return loss;
}

double ep_grad_softmax_soft_xent(int n_classes, int len, const float *logits,
                                 const float *probs, double scale,
                                 float *dlogits)
{
    double loss = 0.0;
    int c, t;

    for (t = 0; t < len; t++) {
        double log_z = log_partition(n_classes, len, logits, t);

        for (c = 0; c < n_classes; c++) {
            double log_p = logits[(size_t)c * len + t] - log_z;
            double q = probs[(size_t)c * len + t];

            /* A class the teacher rules out adds nothing: q log q -> 0. */
            if (q > 0.0)
                loss += q * (log(q) - log_p);
            dlogits[(size_t)c * len + t] = (float)(scale * (exp(log_p) - q));
        }
    }
    return loss;
}
