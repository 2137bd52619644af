/* edgec.kernels._cpu: the Python face of the CPU kernels.
 *
 *   Weight(kind, n, k, group, q, scale, minv, meta)  a prepared weight holding its buffers
 *   linear(weight, x, out, mode)                     out[:] = x @ W^T (mode 0 exact, 1 int8 activations)
 *   Decoder(sizes, eps, blocks, final_norm, head, cos, sin)   sizes: (dim, heads, kv_heads,
 *                                                    head_dim, ffn, window, positions)
 *                                                    a LLaMA-family decoder over prepared weights
 *   Decoder.forward(x, keys, values, start, logits, all_logits, mode)
 *                                                    one pass over new tokens (see decoder.h)
 *   set_threads(n) / get_threads()                   threads that split output rows
 *   simd() / set_simd(name) / simd_levels()          the kernel family in use
 *
 * Arrays arrive through the buffer protocol (numpy arrays, memoryviews of an mmap);
 * every size is checked here, so the kernels never read outside a buffer.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "decoder.h"
#include "linear.h"
#include "pool.h"
#include "q8.h"

static const Level *g_level = &EDGEC_LEVEL_SCALAR;
static int g_threads = 1;

/* ---- buffer checks -------------------------------------------------------------- */

static const char *dtype_name(const Py_buffer *v)
{
    const char *f = v->format ? v->format : "B";
    if ((f[0] == '>' || f[0] == '!') && f[1])
        return "big-endian data";
    if (strchr("@<=", f[0]) && f[1])
        f++;
    switch (f[0]) {
    case 'f': return "float32";
    case 'd': return "float64";
    case 'e': return "float16";
    case 'b': return "int8";
    case 'B': return "uint8";
    case 'h': return "int16";
    case 'H': return "uint16";
    case 'i': case 'l': return v->itemsize == 8 ? "int64" : "int32";
    case 'q': return "int64";
    default: return f;
    }
}

/* Native-endian float32 (every platform this builds on is little-endian). */
static int is_float32(const Py_buffer *v)
{
    const char *f = v->format ? v->format : "B";
    return v->itemsize == 4 && (strcmp(f, "f") == 0 || strcmp(f, "<f") == 0 || strcmp(f, "=f") == 0 || strcmp(f, "@f") == 0);
}

/* ---- Weight object -------------------------------------------------------------- */

enum { BUF_Q, BUF_SCALE, BUF_MIN, BUF_META, BUF_COUNT };
static const char *const BUF_NAMES[BUF_COUNT] = {"q", "scale", "minv", "meta"};

typedef struct {
    PyObject_HEAD
    Weight w;
    Py_buffer bufs[BUF_COUNT];
    int held[BUF_COUNT];
} WeightObject;

static void Weight_dealloc(WeightObject *self)
{
    for (int i = 0; i < BUF_COUNT; i++)
        if (self->held[i])
            PyBuffer_Release(&self->bufs[i]);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Take a C-contiguous buffer of exactly `nbytes` bytes (of float32 if is_float). */
static int take_buffer(WeightObject *self, int which, PyObject *obj, Py_ssize_t nbytes, int is_float)
{
    Py_buffer *view = &self->bufs[which];
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        return -1;
    self->held[which] = 1;
    if (is_float && !is_float32(view)) {
        PyErr_Format(PyExc_TypeError, "%s must be float32, got %s", BUF_NAMES[which], dtype_name(view));
        return -1;
    }
    if (view->len != nbytes) {
        PyErr_Format(PyExc_ValueError, "%s has %zd bytes, expected %zd", BUF_NAMES[which], view->len, nbytes);
        return -1;
    }
    return 0;
}

static PyObject *Weight_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    int kind;
    long long n, k, group;
    PyObject *q, *scale, *minv, *meta;
    static char *kwlist[] = {"kind", "n", "k", "group", "q", "scale", "minv", "meta", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iLLLOOOO:Weight", kwlist, &kind, &n, &k, &group,
                                     &q, &scale, &minv, &meta))
        return NULL;
    if (kind < 0 || kind >= KIND_COUNT)
        return PyErr_Format(PyExc_ValueError, "unknown kind %d", kind);
    const int sparse = meta != Py_None;
    if (n < 1 || k < 1 || (sparse && k % 4))
        return PyErr_Format(PyExc_ValueError, "bad weight shape (%lld, %lld)%s", n, k,
                            sparse ? ": 2:4 needs K divisible by 4" : "");
    const int64_t kv = sparse ? k / 2 : k;
    if (!kind_is_grouped(kind))
        group = kv;
    else if (group < 8 || group % 8)
        return PyErr_Format(PyExc_ValueError, "group size %lld is not a positive multiple of 8", group);
    const int has_scale = kind != KIND_F16 && kind != KIND_BF16, asym = kind_is_asym(kind);
    if ((scale == Py_None) == has_scale || (minv == Py_None) == asym)
        return PyErr_Format(PyExc_ValueError, "kind %d needs %s scale and %s minv", kind,
                            has_scale ? "a" : "no", asym ? "a" : "no");

    WeightObject *self = (WeightObject *)type->tp_alloc(type, 0);
    if (!self)
        return NULL;
    Weight *w = &self->w;
    w->kind = kind;
    w->n = n;
    w->k = k;
    w->kv = kv;
    w->group = group;
    w->ng = has_scale ? (kv + group - 1) / group : 0;
    w->q_stride = (kv * kind_bits(kind) + 7) / 8;
    w->meta_stride = (k + 7) / 8;
    if (take_buffer(self, BUF_Q, q, (Py_ssize_t)(n * w->q_stride), 0) < 0
        || (has_scale && take_buffer(self, BUF_SCALE, scale, (Py_ssize_t)(n * w->ng * 4), 1) < 0)
        || (asym && take_buffer(self, BUF_MIN, minv, (Py_ssize_t)(n * w->ng * 4), 1) < 0)
        || (sparse && take_buffer(self, BUF_META, meta, (Py_ssize_t)(n * w->meta_stride), 0) < 0)) {
        Py_DECREF(self);
        return NULL;
    }
    w->q = (const uint8_t *)self->bufs[BUF_Q].buf;
    w->scale = has_scale ? (const float *)self->bufs[BUF_SCALE].buf : NULL;
    w->minv = asym ? (const float *)self->bufs[BUF_MIN].buf : NULL;
    w->meta = sparse ? (const uint8_t *)self->bufs[BUF_META].buf : NULL;
    return (PyObject *)self;
}

static PyObject *Weight_shape(WeightObject *self, void *closure)
{
    (void)closure;
    return Py_BuildValue("(LL)", (long long)self->w.n, (long long)self->w.k);
}

static PyGetSetDef Weight_getset[] = {
    {"shape", (getter)Weight_shape, NULL, "(N, K) of the weight", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject WeightType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "edgec.kernels._cpu.Weight",
    .tp_basicsize = sizeof(WeightObject),
    .tp_dealloc = (destructor)Weight_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A prepared weight: its kind, shape and buffers, ready for linear().",
    .tp_new = Weight_new,
    .tp_getset = Weight_getset,
};

/* ---- linear ------------------------------------------------------------------------ */

/* linear(weight, x, out, mode): out[:] = x @ W^T. */
static PyObject *cpu_linear(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 4)
        return PyErr_Format(PyExc_TypeError, "linear() takes 4 arguments (weight, x, out, mode), got %zd", nargs);
    if (!PyObject_TypeCheck(args[0], &WeightType))
        return PyErr_Format(PyExc_TypeError, "weight must be a prepared Weight, got %s", Py_TYPE(args[0])->tp_name);
    const Weight *w = &((WeightObject *)args[0])->w;
    const long mode = PyLong_AsLong(args[3]);
    if (mode == -1 && PyErr_Occurred())
        return NULL;

    Py_buffer xv, yv;
    if (PyObject_GetBuffer(args[1], &xv, PyBUF_STRIDES | PyBUF_FORMAT) < 0) {
        PyErr_Format(PyExc_TypeError, "x must be a float32 array of shape (M, %lld), got %s", (long long)w->k,
                     Py_TYPE(args[1])->tp_name);
        return NULL;
    }
    if (PyObject_GetBuffer(args[2], &yv, PyBUF_STRIDES | PyBUF_FORMAT | PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&xv);
        PyErr_Format(PyExc_TypeError, "out must be a writable float32 array of shape (M, %lld)", (long long)w->n);
        return NULL;
    }
    PyObject *result = NULL;
    if (!is_float32(&xv)) {
        PyErr_Format(PyExc_TypeError, "x must be float32, got %s", dtype_name(&xv));
    } else if (xv.ndim != 2 || xv.shape[1] != w->k || xv.shape[0] < 1) {
        PyErr_Format(PyExc_ValueError, "x must have shape (M, %lld) with M >= 1 for a weight of shape (%lld, %lld), got %s%zd%s",
                     (long long)w->k, (long long)w->n, (long long)w->k, xv.ndim == 2 ? "(" : "ndim ",
                     xv.ndim == 2 ? xv.shape[0] : (Py_ssize_t)xv.ndim, xv.ndim == 2 ? ", ...)" : "");
    } else if (xv.strides[1] != 4 || xv.strides[0] % 4 || xv.strides[0] < 4 * xv.shape[1]) {
        PyErr_SetString(PyExc_ValueError, "x rows must be contiguous float32 (use np.ascontiguousarray)");
    } else if (!is_float32(&yv)) {
        PyErr_Format(PyExc_TypeError, "out must be float32, got %s", dtype_name(&yv));
    } else if (yv.ndim != 2 || yv.shape[0] != xv.shape[0] || yv.shape[1] != w->n) {
        PyErr_Format(PyExc_ValueError, "out must have shape (%zd, %lld)", xv.shape[0], (long long)w->n);
    } else if (yv.strides[1] != 4 || yv.strides[0] % 4 || yv.strides[0] < 4 * yv.shape[1]) {
        PyErr_SetString(PyExc_ValueError, "out rows must be contiguous float32");
    } else if ((const char *)xv.buf < (const char *)yv.buf + yv.strides[0] * yv.shape[0]
               && (const char *)yv.buf < (const char *)xv.buf + xv.strides[0] * xv.shape[0]) {
        PyErr_SetString(PyExc_ValueError, "out must not overlap x");
    } else if (mode != 0 && mode != 1) {
        PyErr_Format(PyExc_ValueError, "mode must be 0 (exact) or 1 (int8 activations), got %ld", mode);
    } else if (mode == 1 && !q8_supported(w)) {
        PyErr_SetString(PyExc_ValueError, "int8 activations need an int4 or int8 weight");
    } else {
        const float *x = (const float *)xv.buf;
        float *y = (float *)yv.buf;
        const int64_t m = xv.shape[0], ldx = xv.strides[0] / 4, ldy = yv.strides[0] / 4;
        int rc = 0;
        Py_BEGIN_ALLOW_THREADS
        if (mode == 0)
            edgec_linear(w, g_level, x, ldx, m, y, ldy, g_threads);
        else
            rc = q8_linear(w, g_level, x, ldx, m, y, ldy, g_threads);
        Py_END_ALLOW_THREADS
        if (rc != 0)
            PyErr_NoMemory();
        else
            result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&xv);
    PyBuffer_Release(&yv);
    return result;
}

/* ---- Decoder object ---------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    Decoder d;
    DecoderBlock *blocks;
    PyObject *weights;      /* list: the Weight objects the decoder points into */
    Py_buffer *views;       /* the float vectors it points into */
    int n_views, cap_views;
    float *scratch;
    int64_t scratch_floats;
    int busy;               /* a forward is running (it releases the GIL) */
} DecoderObject;

static void Decoder_dealloc(DecoderObject *self)
{
    for (int i = 0; i < self->n_views; i++)
        PyBuffer_Release(&self->views[i]);
    PyMem_Free(self->views);
    PyMem_Free(self->blocks);
    free(self->scratch);
    Py_XDECREF(self->weights);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* "block i: " for a block's tensors, "" for the decoder's own (block < 0). */
static const char *where(long block, char buf[32])
{
    if (block < 0)
        return "";
    snprintf(buf, 32, "block %ld: ", block);
    return buf;
}

/* A C-contiguous float32 vector of n values (NULL with no error set for None when optional). */
static const float *take_vector(DecoderObject *self, PyObject *obj, int64_t n, const char *what, long block, int optional)
{
    char buf[32];
    if (obj == Py_None) {
        if (!optional)
            PyErr_Format(PyExc_ValueError, "%s%s is required", where(block, buf), what);
        return NULL;
    }
    if (self->n_views == self->cap_views) {
        const int cap = self->cap_views ? 2 * self->cap_views : 64;
        Py_buffer *grown = PyMem_Realloc(self->views, (size_t)cap * sizeof(Py_buffer));
        if (!grown) {
            PyErr_NoMemory();
            return NULL;
        }
        self->views = grown;
        self->cap_views = cap;
    }
    Py_buffer *view = &self->views[self->n_views];
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        return NULL;
    self->n_views++;
    if (!is_float32(view)) {
        PyErr_Format(PyExc_TypeError, "%s%s must be float32, got %s", where(block, buf), what, dtype_name(view));
        return NULL;
    }
    if (view->len != (Py_ssize_t)(n * 4)) {
        PyErr_Format(PyExc_ValueError, "%s%s has %zd values, expected %lld", where(block, buf), what, view->len / 4, (long long)n);
        return NULL;
    }
    return (const float *)view->buf;
}

/* A prepared weight of shape (n, k), with an optional bias of n values. */
static int take_proj(DecoderObject *self, Proj *p, PyObject *weight, PyObject *bias, int64_t n, int64_t k,
                     const char *what, long block)
{
    char buf[32];
    if (!PyObject_TypeCheck(weight, &WeightType)) {
        PyErr_Format(PyExc_TypeError, "%s%s must be a prepared Weight, got %s", where(block, buf), what, Py_TYPE(weight)->tp_name);
        return -1;
    }
    p->w = &((WeightObject *)weight)->w;
    if (p->w->n != n || p->w->k != k) {
        PyErr_Format(PyExc_ValueError, "%s%s has shape (%lld, %lld), expected (%lld, %lld)", where(block, buf), what,
                     (long long)p->w->n, (long long)p->w->k, (long long)n, (long long)k);
        return -1;
    }
    if (PyList_Append(self->weights, weight) < 0)
        return -1;
    p->bias = take_vector(self, bias, n, what, block, 1);
    return p->bias || !PyErr_Occurred() ? 0 : -1;
}

static int take_block(DecoderObject *self, DecoderBlock *b, PyObject *item, long i)
{
    const Decoder *d = &self->d;
    PyObject *attn_norm, *q, *qb, *k, *kb, *v, *vb, *o, *ob, *mlp_norm, *gate, *up, *down, *q_norm, *k_norm;
    if (!PyArg_ParseTuple(item, "OOOOOOOOOOOOOOO:block", &attn_norm, &q, &qb, &k, &kb, &v, &vb, &o, &ob, &mlp_norm,
                          &gate, &up, &down, &q_norm, &k_norm))
        return -1;
    const int64_t qw = d->heads * d->head_dim, kvw = d->kv_heads * d->head_dim;
    if (!(b->attn_norm = take_vector(self, attn_norm, d->dim, "attn_norm", i, 0))
        || !(b->mlp_norm = take_vector(self, mlp_norm, d->dim, "mlp_norm", i, 0)))
        return -1;
    if (take_proj(self, &b->q, q, qb, qw, d->dim, "q", i) || take_proj(self, &b->k, k, kb, kvw, d->dim, "k", i)
        || take_proj(self, &b->v, v, vb, kvw, d->dim, "v", i) || take_proj(self, &b->o, o, ob, d->dim, qw, "o", i)
        || take_proj(self, &b->gate, gate, Py_None, d->ffn, d->dim, "gate", i)
        || take_proj(self, &b->up, up, Py_None, d->ffn, d->dim, "up", i)
        || take_proj(self, &b->down, down, Py_None, d->dim, d->ffn, "down", i))
        return -1;
    if ((q_norm == Py_None) != (k_norm == Py_None)) {
        PyErr_Format(PyExc_ValueError, "block %ld: q_norm and k_norm come together", i);
        return -1;
    }
    b->q_norm = take_vector(self, q_norm, d->head_dim, "q_norm", i, 1);
    b->k_norm = take_vector(self, k_norm, d->head_dim, "k_norm", i, 1);
    return PyErr_Occurred() ? -1 : 0;
}

static PyObject *Decoder_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    long long dim, heads, kv_heads, head_dim, ffn, window, positions;
    double eps;
    PyObject *blocks, *final_norm, *head, *cos, *sin;
    static char *kwlist[] = {"sizes", "eps", "blocks", "final_norm", "head", "cos", "sin", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "(LLLLLLL)dO!OOOO:Decoder", kwlist, &dim, &heads, &kv_heads,
                                     &head_dim, &ffn, &window, &positions, &eps, &PyList_Type, &blocks, &final_norm, &head, &cos, &sin))
        return NULL;
    if (dim < 1 || heads < 1 || kv_heads < 1 || heads % kv_heads || head_dim < 2 || head_dim % 2 || ffn < 1 || window < 0
        || positions < 1)
        return PyErr_Format(PyExc_ValueError, "bad decoder sizes (dim %lld, heads %lld, kv_heads %lld, head_dim %lld, "
                            "ffn %lld, window %lld, positions %lld)", dim, heads, kv_heads, head_dim, ffn, window, positions);
    const Py_ssize_t layers = PyList_GET_SIZE(blocks);
    if (layers < 1)
        return PyErr_Format(PyExc_ValueError, "a decoder needs at least one block");
    if (!PyObject_TypeCheck(head, &WeightType))
        return PyErr_Format(PyExc_TypeError, "head must be a prepared Weight, got %s", Py_TYPE(head)->tp_name);

    DecoderObject *self = (DecoderObject *)type->tp_alloc(type, 0);
    if (!self)
        return NULL;
    Decoder *d = &self->d;
    d->layers = layers;
    d->dim = dim;
    d->heads = heads;
    d->kv_heads = kv_heads;
    d->head_dim = head_dim;
    d->ffn = ffn;
    d->window = window;
    d->positions = positions;
    d->eps = (float)eps;
    d->vocab = ((WeightObject *)head)->w.n;
    self->weights = PyList_New(0);
    self->blocks = PyMem_Calloc((size_t)layers, sizeof(DecoderBlock));
    if (!self->weights || !self->blocks) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    d->blocks = self->blocks;
    for (Py_ssize_t i = 0; i < layers; i++)
        if (take_block(self, &self->blocks[i], PyList_GET_ITEM(blocks, i), (long)i) < 0) {
            Py_DECREF(self);
            return NULL;
        }
    const int64_t half = head_dim / 2;
    if (!(d->final_norm = take_vector(self, final_norm, dim, "final_norm", -1, 0))
        || take_proj(self, &d->head, head, Py_None, d->vocab, dim, "head", -1)
        || !(d->cos = take_vector(self, cos, positions * half, "cos", -1, 0))
        || !(d->sin = take_vector(self, sin, positions * half, "sin", -1, 0))) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

/* A writable C-contiguous float32 array of the given shape (-1: any extent >= 1). */
static int get_array(PyObject *obj, Py_buffer *view, const char *name, int ndim, const int64_t *shape)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE | PyBUF_ND) < 0) {
        PyErr_Format(PyExc_TypeError, "%s must be a writable C-contiguous float32 array", name);
        return -1;
    }
    int ok = is_float32(view) && view->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++)
        ok = shape[i] < 0 ? view->shape[i] >= 1 : view->shape[i] == shape[i];
    if (!ok) {
        PyErr_Format(PyExc_ValueError, "%s has the wrong dtype or shape (%s, ndim %d)", name, dtype_name(view), view->ndim);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* forward(x, keys, values, start, logits, all_logits, mode) */
static PyObject *Decoder_forward(DecoderObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7)
        return PyErr_Format(PyExc_TypeError, "forward() takes 7 arguments (x, keys, values, start, logits, all_logits, mode), got %zd", nargs);
    const Decoder *d = &self->d;
    const long long start = PyLong_AsLongLong(args[3]);
    const int all_logits = PyObject_IsTrue(args[5]);
    const long mode = PyLong_AsLong(args[6]);
    if (PyErr_Occurred() || all_logits < 0)
        return NULL;
    if (mode != 0 && mode != 1)
        return PyErr_Format(PyExc_ValueError, "mode must be 0 (exact) or 1 (int8 activations), got %ld", mode);
    Py_buffer xv, kv, vv, lv;
    const int64_t x_shape[2] = {-1, d->dim};
    if (get_array(args[0], &xv, "x", 2, x_shape) < 0)
        return NULL;
    const int64_t t = xv.shape[0];
    const int64_t cache_shape[4] = {d->layers, -1, d->kv_heads, d->head_dim};
    const int64_t logits_shape[2] = {all_logits ? t : 1, d->vocab};
    PyObject *result = NULL;
    if (get_array(args[1], &kv, "keys", 4, cache_shape) < 0)
        goto x_done;
    if (get_array(args[2], &vv, "values", 4, cache_shape) < 0)
        goto keys_done;
    if (get_array(args[4], &lv, "logits", 2, logits_shape) < 0)
        goto values_done;
    const int64_t context = kv.shape[1];
    if (vv.shape[1] != context) {
        PyErr_SetString(PyExc_ValueError, "keys and values have different context lengths");
    } else if (start < 0 || start + t > context || start + t > d->positions) {
        PyErr_Format(PyExc_ValueError, "positions %lld..%lld are outside the cache (%lld) or the rotary tables (%lld)",
                     start, start + t - 1, (long long)context, (long long)d->positions);
    } else if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "this decoder is running a forward in another thread");
    } else {
        const int64_t need = decoder_scratch_floats(d, t, start);
        if (need > self->scratch_floats) {
            float *grown = realloc(self->scratch, (size_t)need * sizeof(float));
            if (!grown) {
                PyErr_NoMemory();
                goto all_done;
            }
            self->scratch = grown;
            self->scratch_floats = need;
        }
        int rc;
        self->busy = 1;
        Py_BEGIN_ALLOW_THREADS
        rc = decoder_forward(d, g_level, (int)mode, g_threads, (float *)xv.buf, t, start, (float *)kv.buf,
                             (float *)vv.buf, context, (float *)lv.buf, all_logits, self->scratch);
        Py_END_ALLOW_THREADS
        self->busy = 0;
        if (rc != 0)
            PyErr_NoMemory();
        else
            result = Py_NewRef(Py_None);
    }
all_done:
    PyBuffer_Release(&lv);
values_done:
    PyBuffer_Release(&vv);
keys_done:
    PyBuffer_Release(&kv);
x_done:
    PyBuffer_Release(&xv);
    return result;
}

static PyMethodDef Decoder_methods[] = {
    {"forward", (PyCFunction)(void (*)(void))Decoder_forward, METH_FASTCALL,
     "forward(x, keys, values, start, logits, all_logits, mode): one pass over the tokens whose embeddings are x."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject DecoderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "edgec.kernels._cpu.Decoder",
    .tp_basicsize = sizeof(DecoderObject),
    .tp_dealloc = (destructor)Decoder_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A LLaMA-family decoder over prepared weights (see kernels/cpu/decoder.h).",
    .tp_new = Decoder_new,
    .tp_methods = Decoder_methods,
};

/* ---- settings ---------------------------------------------------------------------- */

static PyObject *cpu_set_threads(PyObject *module, PyObject *arg)
{
    (void)module;
    long n = PyLong_AsLong(arg);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    if (n < 1 || n > 256)
        return PyErr_Format(PyExc_ValueError, "threads must be between 1 and 256, got %ld", n);
    g_threads = pool_threads_supported() ? (int)n : 1;
    Py_RETURN_NONE;
}

static PyObject *cpu_get_threads(PyObject *module, PyObject *unused)
{
    (void)module, (void)unused;
    return PyLong_FromLong(g_threads);
}

static const Level *levels(int i)
{
#ifdef EDGEC_HAVE_AVX2
    const int vnni = edgec_avx_vnni_supported(), avx2 = edgec_avx2_supported();
    const Level *order[3] = {vnni ? &EDGEC_LEVEL_AVX2_VNNI : NULL, avx2 ? &EDGEC_LEVEL_AVX2 : NULL, &EDGEC_LEVEL_SCALAR};
    for (int j = 0, seen = 0; j < 3; j++)  /* the i-th of the available ones */
        if (order[j] && seen++ == i)
            return order[j];
    return NULL;
#else
    return i == 0 ? &EDGEC_LEVEL_SCALAR : NULL;
#endif
}

static PyObject *cpu_simd(PyObject *module, PyObject *unused)
{
    (void)module, (void)unused;
    return PyUnicode_FromString(g_level->name);
}

static PyObject *cpu_simd_levels(PyObject *module, PyObject *unused)
{
    (void)module, (void)unused;
    PyObject *list = PyList_New(0);
    for (int i = 0; list && i < 4; i++) {
        const Level *lv = levels(i);
        PyObject *name = lv ? PyUnicode_FromString(lv->name) : NULL;
        if (lv && (!name || PyList_Append(list, name) < 0)) {
            Py_XDECREF(name);
            Py_CLEAR(list);
        }
        Py_XDECREF(name);
    }
    return list;
}

static PyObject *cpu_set_simd(PyObject *module, PyObject *arg)
{
    (void)module;
    const char *name = PyUnicode_AsUTF8(arg);
    if (!name)
        return NULL;
    for (int i = 0; i < 4; i++) {
        const Level *lv = levels(i);
        if (lv && strcmp(lv->name, name) == 0) {
            g_level = lv;
            Py_RETURN_NONE;
        }
    }
    return PyErr_Format(PyExc_ValueError, "SIMD level %R is not available on this CPU", arg);
}

static PyMethodDef cpu_methods[] = {
    {"linear", (PyCFunction)(void (*)(void))cpu_linear, METH_FASTCALL,
     "linear(weight, x, out, mode): out[:] = x @ W^T; mode 0 exact, 1 int8 activations."},
    {"set_threads", cpu_set_threads, METH_O, "Threads that split the output rows."},
    {"get_threads", cpu_get_threads, METH_NOARGS, "Threads that split the output rows."},
    {"simd", cpu_simd, METH_NOARGS, "The kernel family in use, e.g. 'avx2+fma' or 'generic'."},
    {"simd_levels", cpu_simd_levels, METH_NOARGS, "Kernel families this CPU runs, fastest first."},
    {"set_simd", cpu_set_simd, METH_O, "Use one kernel family (for tests and comparisons)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef cpu_module = {
    PyModuleDef_HEAD_INIT, "_cpu", "CPU kernels for edgec's weight formats.", -1, cpu_methods,
    NULL, NULL, NULL, NULL,
};

static const char *const KIND_NAMES[KIND_COUNT] = EDGEC_KIND_NAMES;

PyMODINIT_FUNC PyInit__cpu(void)
{
    edgec_tables_init();
    g_level = levels(0);
    if (PyType_Ready(&WeightType) < 0 || PyType_Ready(&DecoderType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&cpu_module);
    if (!m)
        return NULL;
    PyObject *kinds = PyDict_New();
    for (int i = 0; kinds && i < KIND_COUNT; i++) {
        PyObject *v = PyLong_FromLong(i);
        if (!v || PyDict_SetItemString(kinds, KIND_NAMES[i], v) < 0)
            Py_CLEAR(kinds);
        Py_XDECREF(v);
    }
    const int failed = !kinds || PyModule_AddObjectRef(m, "KINDS", kinds) < 0
                       || PyModule_AddIntConstant(m, "TILE_K", TILE_K) < 0
                       || PyModule_AddObjectRef(m, "Weight", (PyObject *)&WeightType) < 0
                       || PyModule_AddObjectRef(m, "Decoder", (PyObject *)&DecoderType) < 0;
    Py_XDECREF(kinds);
    if (failed) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
