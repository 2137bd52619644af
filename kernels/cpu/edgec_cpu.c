/* edgec.kernels._cpu: the Python face of the CPU kernels.
 *
 *   Weight(kind, n, k, group, q, scale, minv, meta)  a prepared weight holding its buffers
 *   linear(weight, x, out, mode)                     out[:] = x @ W^T (mode 0 exact, 1 int8 activations)
 *   set_threads(n) / get_threads()                   threads that split output rows
 *   simd() / set_simd(name) / simd_levels()          the kernel family in use
 *
 * Arrays arrive through the buffer protocol (numpy arrays, memoryviews of an mmap);
 * every size is checked here, so the kernels never read outside a buffer.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

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
    if (i == 0)
        return edgec_avx2_supported() ? &EDGEC_LEVEL_AVX2 : NULL;
    return i == 1 ? &EDGEC_LEVEL_SCALAR : NULL;
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

static const char *const KIND_NAMES[KIND_COUNT] = {
    [KIND_F16] = "f16", [KIND_BF16] = "bf16", [KIND_FP8] = "fp8", [KIND_INT8] = "int8",
    [KIND_INT2] = "int2", [KIND_INT3] = "int3", [KIND_INT4] = "int4",
    [KIND_INT2_ASYM] = "int2_asym", [KIND_INT3_ASYM] = "int3_asym", [KIND_INT4_ASYM] = "int4_asym",
    [KIND_NF4] = "nf4",
};

PyMODINIT_FUNC PyInit__cpu(void)
{
    edgec_tables_init();
    g_level = levels(0);
    if (PyType_Ready(&WeightType) < 0)
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
                       || PyModule_AddObjectRef(m, "Weight", (PyObject *)&WeightType) < 0;
    Py_XDECREF(kinds);
    if (failed) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
