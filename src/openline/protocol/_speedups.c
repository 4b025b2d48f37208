/*
 * Compiled accelerator for the WebSocket frame path (RFC 6455, sections 5.2-5.3).
 *
 * - apply_mask(): every frame a client sends, and every frame a server
 *   receives, is XORed with a 4-byte key; this does it at memory speed. The
 *   pure-Python fallback `_mask.py` has the same contract.
 * - encode_frame(): a frame's header, optional masking key and payload in one
 *   bytes object. The pure-Python fallback is `frames._encode_frame`.
 * - parse_frames(): the common case of the receive path, whole unfragmented
 *   text and binary messages, many per call. It stops at the first frame that
 *   is anything else (incomplete, fragmented, control, reserved bits, wrong
 *   masking, too large, invalid UTF-8...) and leaves that frame to the
 *   Python parser in `connection.py`, which alone defines the errors and
 *   close codes. Without this module the Python parser does all the work.
 *
 * `mask.py` picks the implementations; the tests run both.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

/*
 * Above this size the XOR loop runs without the GIL, so other threads make
 * progress while a large frame is masked. Below it, releasing and
 * re-acquiring the GIL would cost more than the loop itself.
 */
#define GIL_RELEASE_THRESHOLD (64 * 1024)

/*
 * XOR `size` bytes of `src` into `dst` with `mask` repeated.
 *
 * The main loop works on 8 bytes at a time with the key doubled into a
 * uint64_t, and compilers turn it into SIMD code (16 bytes per instruction
 * with baseline x86-64 SSE2; hand-written SSE2 and AVX2 versions measured no
 * faster, because at that point the loop is bound by memory bandwidth).
 *
 * Loads and stores go through memcpy: the input may be any slice of any
 * buffer, so it may be unaligned, and a fixed-size memcpy is legal on every
 * platform yet compiles to plain loads and stores. Building the key with memcpy too
 * gives it the same byte order as the data, so big- and little-endian
 * machines need no special case.
 *
 * The counters are unsigned on purpose: Python builds extensions with
 * -fwrapv, and under that flag the same loop over a signed Py_ssize_t index
 * compiled (gcc 12) to code that ran at half the speed.
 */
static void
xor_with_mask(const unsigned char *src, unsigned char *dst, size_t size,
              const unsigned char mask[4])
{
    unsigned char doubled[8];
    uint64_t key;
    size_t words = size / 8;
    size_t i;

    memcpy(doubled, mask, 4);
    memcpy(doubled + 4, mask, 4);
    memcpy(&key, doubled, 8);

    for (i = 0; i < words; i++) {
        uint64_t chunk;
        memcpy(&chunk, src + 8 * i, 8);
        chunk ^= key;
        memcpy(dst + 8 * i, &chunk, 8);
    }
    /* The tail starts at a multiple of 8, so i & 3 is still the key offset. */
    for (i = 8 * words; i < size; i++) {
        dst[i] = src[i] ^ mask[i & 3];
    }
}

PyDoc_STRVAR(apply_mask_doc,
"apply_mask(data, mask)\n"
"--\n"
"\n"
"XOR ``data`` with the 4-byte ``mask`` repeated; applying it twice is the identity.\n"
"\n"
"``data`` may be any C-contiguous buffer (bytes, bytearray, memoryview, ...).\n"
"\n"
"Raises:\n"
"    TypeError: ``data`` or ``mask`` is not a bytes-like object.\n"
"    ValueError: ``mask`` is not exactly 4 bytes long.");

/*
 * Bind the arguments of apply_mask(data, mask) the way a Python function
 * would, keywords included, so both implementations accept the same calls.
 * Done by hand on the METH_FASTCALL arrays: PyArg_ParseTupleAndKeywords needs
 * a tuple and a dict, which doubles the cost of masking a small frame.
 */
static int
bind_arguments(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
               PyObject *bound[2])
{
    static const char *const names[2] = {"data", "mask"};
    Py_ssize_t nkwargs = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);

    if (nargs > 2) {
        PyErr_Format(PyExc_TypeError,
                     "apply_mask() takes 2 positional arguments but %zd were given",
                     nargs);
        return -1;
    }
    bound[0] = nargs > 0 ? args[0] : NULL;
    bound[1] = nargs > 1 ? args[1] : NULL;

    for (Py_ssize_t k = 0; k < nkwargs; k++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, k);
        int i = 0;
        while (i < 2 && PyUnicode_CompareWithASCIIString(name, names[i]) != 0) {
            i++;
        }
        if (i == 2) {
            PyErr_Format(PyExc_TypeError,
                         "apply_mask() got an unexpected keyword argument '%U'",
                         name);
            return -1;
        }
        if (bound[i] != NULL) {
            PyErr_Format(PyExc_TypeError,
                         "apply_mask() got multiple values for argument '%s'",
                         names[i]);
            return -1;
        }
        bound[i] = args[nargs + k];
    }

    if (bound[0] == NULL && bound[1] == NULL) {
        PyErr_SetString(PyExc_TypeError,
                        "apply_mask() missing 2 required positional arguments: "
                        "'data' and 'mask'");
        return -1;
    }
    for (int i = 0; i < 2; i++) {
        if (bound[i] == NULL) {
            PyErr_Format(PyExc_TypeError,
                         "apply_mask() missing 1 required positional argument: '%s'",
                         names[i]);
            return -1;
        }
    }
    return 0;
}

static PyObject *
apply_mask(PyObject *Py_UNUSED(module), PyObject *const *args,
           Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *bound[2];
    Py_buffer data;
    Py_buffer mask;
    unsigned char key[4];
    PyObject *result = NULL;
    PyThreadState *saved = NULL;

    if (bind_arguments(args, nargs, kwnames, bound) < 0) {
        return NULL;
    }
    /* PyBUF_SIMPLE asks for contiguous bytes. The export keeps the object
     * alive, and a bytearray unresizable, until PyBuffer_Release. */
    if (PyObject_GetBuffer(bound[0], &data, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(bound[1], &mask, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    if (mask.len != 4) {
        PyErr_Format(PyExc_ValueError, "mask must be 4 bytes, got %zd bytes",
                     mask.len);
        goto done;
    }
    memcpy(key, mask.buf, 4);

    result = PyBytes_FromStringAndSize(NULL, data.len);
    if (result == NULL) {
        goto done;
    }
    /* Releasing the GIL is safe: `data` stays exported until the release
     * below, and no other thread can see `result` yet. */
    if (data.len > GIL_RELEASE_THRESHOLD) {
        saved = PyEval_SaveThread();
    }
    xor_with_mask(data.buf, (unsigned char *)PyBytes_AS_STRING(result),
                  (size_t)data.len, key);
    if (saved != NULL) {
        PyEval_RestoreThread(saved);
    }

done:
    PyBuffer_Release(&mask);
    PyBuffer_Release(&data);
    return result;
}

/* ---------------------------------------------------------------------------
 * encode_frame(head, data, mask_key)
 */

PyDoc_STRVAR(encode_frame_doc,
"encode_frame(head, data, mask_key)\n"
"--\n"
"\n"
"Return a frame for the wire: header, masking key if any, payload.\n"
"\n"
"``head`` is the first byte (FIN, RSV bits, opcode); ``mask_key`` is 4 bytes,\n"
"or ``None`` for an unmasked frame.\n"
"\n"
"Raises:\n"
"    ValueError: ``head`` is not a byte or ``mask_key`` is not 4 bytes long.");

static PyObject *
encode_frame(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer data;
    Py_buffer key = {0};
    int masked;
    long head;
    unsigned char header[14];
    Py_ssize_t hlen;
    size_t length;
    PyObject *result = NULL;

    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError,
                     "encode_frame() takes 3 positional arguments but %zd were given",
                     nargs);
        return NULL;
    }
    head = PyLong_AsLong(args[0]);
    if (head == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (head < 0 || head > 255) {
        PyErr_Format(PyExc_ValueError, "head must be a byte, got %ld", head);
        return NULL;
    }
    masked = args[2] != Py_None;
    if (PyObject_GetBuffer(args[1], &data, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (masked) {
        if (PyObject_GetBuffer(args[2], &key, PyBUF_SIMPLE) < 0) {
            PyBuffer_Release(&data);
            return NULL;
        }
        if (key.len != 4) {
            PyErr_Format(PyExc_ValueError, "mask must be 4 bytes, got %zd bytes",
                         key.len);
            goto done;
        }
    }
    length = (size_t)data.len;
    header[0] = (unsigned char)head;
    if (length < 126) {
        header[1] = (unsigned char)length;
        hlen = 2;
    }
    else if (length < 0x10000) {
        header[1] = 126;
        header[2] = (unsigned char)(length >> 8);
        header[3] = (unsigned char)length;
        hlen = 4;
    }
    else {
        uint64_t big = (uint64_t)length;
        header[1] = 127;
        for (int i = 0; i < 8; i++) {
            header[2 + i] = (unsigned char)(big >> (56 - 8 * i));
        }
        hlen = 10;
    }
    if (masked) {
        header[1] |= 0x80;
        memcpy(header + hlen, key.buf, 4);
        hlen += 4;
    }
    result = PyBytes_FromStringAndSize(NULL, hlen + data.len);
    if (result == NULL) {
        goto done;
    }
    {
        unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
        memcpy(out, header, (size_t)hlen);
        if (masked) {
            xor_with_mask(data.buf, out + hlen, length, key.buf);
        }
        else if (length) {
            memcpy(out + hlen, data.buf, length);
        }
    }

done:
    if (masked) {
        PyBuffer_Release(&key);
    }
    PyBuffer_Release(&data);
    return result;
}

/* ---------------------------------------------------------------------------
 * parse_frames(buffer, pos, is_client, max_size, events, text_type, binary_type)
 */

PyDoc_STRVAR(parse_frames_doc,
"parse_frames(buffer, pos, is_client, max_size, events, text_type, binary_type)\n"
"--\n"
"\n"
"Parse whole unfragmented text and binary frames from ``buffer[pos:]``.\n"
"\n"
"Appends ``text_type(str)`` or ``binary_type(bytes)`` to the list ``events``\n"
"for each one and returns the position after the last. It stops, without\n"
"consuming it, at the first frame that is not a complete, valid, final text or\n"
"binary frame without reserved bits, masked as ``is_client`` requires and at\n"
"most ``max_size`` bytes long (a negative ``max_size`` means no limit). That\n"
"frame is the Python parser's to handle, errors included.");

/* Build an event without running the dataclass's __init__: allocate the
 * instance and store its one field through the slot descriptor, which the
 * frozen dataclass's __setattr__ would refuse but the generic one allows. */
static PyObject *
make_event(PyObject *type, PyObject *field, PyObject *data)
{
    PyTypeObject *tp = (PyTypeObject *)type;
    PyObject *event = tp->tp_alloc(tp, 0);

    if (event == NULL) {
        return NULL;
    }
    if (PyObject_GenericSetAttr(event, field, data) < 0) {
        Py_DECREF(event);
        return NULL;
    }
    return event;
}

static PyObject *
parse_frames(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view;
    Py_ssize_t pos, max_size;
    int is_client;
    PyObject *events, *text_type, *binary_type;
    const unsigned char *buf;
    size_t end;
    PyObject *data_field = NULL;
    PyObject *result = NULL;

    if (nargs != 7) {
        PyErr_Format(PyExc_TypeError,
                     "parse_frames() takes 7 positional arguments but %zd were given",
                     nargs);
        return NULL;
    }
    pos = PyLong_AsSsize_t(args[1]);
    if (pos == -1 && PyErr_Occurred()) {
        return NULL;
    }
    is_client = PyObject_IsTrue(args[2]);
    if (is_client < 0) {
        return NULL;
    }
    if (args[3] == Py_None) {
        max_size = -1;
    }
    else {
        max_size = PyLong_AsSsize_t(args[3]);
        if (max_size == -1 && PyErr_Occurred()) {
            return NULL;
        }
    }
    events = args[4];
    text_type = args[5];
    binary_type = args[6];
    if (!PyList_Check(events)) {
        PyErr_SetString(PyExc_TypeError, "events must be a list");
        return NULL;
    }
    if (!PyType_Check(text_type) || !PyType_Check(binary_type)) {
        PyErr_SetString(PyExc_TypeError, "text_type and binary_type must be types");
        return NULL;
    }
    /* Looked up per call, not per frame; no module state, so the module stays
     * safe in subinterpreters. */
    data_field = PyUnicode_InternFromString("data");
    if (data_field == NULL) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        Py_DECREF(data_field);
        return NULL;
    }
    buf = view.buf;
    end = (size_t)view.len;
    if (pos < 0 || (size_t)pos > end) {
        PyErr_Format(PyExc_ValueError, "pos %zd is outside the buffer", pos);
        goto done;
    }

    for (;;) {
        size_t p = (size_t)pos;
        size_t avail = end - p;
        unsigned char first, second;
        size_t header = 2;
        uint64_t length;
        int opcode, masked;
        const unsigned char *payload;
        PyObject *data, *event;

        if (avail < 2) {
            break;
        }
        first = buf[p];
        second = buf[p + 1];
        opcode = first & 0x0F;
        /* FIN set, RSV clear, text or binary: anything else is Python's. */
        if ((first & 0xF0) != 0x80 || (opcode != 1 && opcode != 2)) {
            break;
        }
        masked = (second & 0x80) != 0;
        if (masked == is_client) {
            break;
        }
        length = second & 0x7F;
        if (length == 126) {
            if (avail < 4) {
                break;
            }
            length = ((uint64_t)buf[p + 2] << 8) | buf[p + 3];
            header = 4;
        }
        else if (length == 127) {
            if (avail < 10) {
                break;
            }
            length = 0;
            for (int i = 0; i < 8; i++) {
                length = (length << 8) | buf[p + 2 + i];
            }
            header = 10;
        }
        if (masked) {
            header += 4;
        }
        if (max_size >= 0 && length > (uint64_t)max_size) {
            break;
        }
        if (avail < header || length > avail - header) {
            break;
        }
        payload = buf + p + header;

        if (masked) {
            data = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)length);
            if (data == NULL) {
                goto done;
            }
            xor_with_mask(payload, (unsigned char *)PyBytes_AS_STRING(data),
                          (size_t)length, payload - 4);
            payload = (const unsigned char *)PyBytes_AS_STRING(data);
        }
        else {
            data = NULL;
        }
        if (opcode == 1) {
            PyObject *text = PyUnicode_DecodeUTF8((const char *)payload,
                                                  (Py_ssize_t)length, NULL);
            Py_XDECREF(data);
            if (text == NULL) {
                if (PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
                    /* Invalid text: the Python parser fails the connection. */
                    PyErr_Clear();
                    break;
                }
                goto done;
            }
            data = text;
            event = make_event(text_type, data_field, data);
        }
        else {
            if (data == NULL) {
                data = PyBytes_FromStringAndSize((const char *)payload, (Py_ssize_t)length);
                if (data == NULL) {
                    goto done;
                }
            }
            event = make_event(binary_type, data_field, data);
        }
        Py_DECREF(data);
        if (event == NULL) {
            goto done;
        }
        if (PyList_Append(events, event) < 0) {
            Py_DECREF(event);
            goto done;
        }
        Py_DECREF(event);
        pos = (Py_ssize_t)(p + header + (size_t)length);
    }
    result = PyLong_FromSsize_t(pos);

done:
    PyBuffer_Release(&view);
    Py_DECREF(data_field);
    return result;
}

static PyMethodDef speedups_methods[] = {
    {"apply_mask", (PyCFunction)(void (*)(void))apply_mask,
     METH_FASTCALL | METH_KEYWORDS, apply_mask_doc},
    {"encode_frame", (PyCFunction)(void (*)(void))encode_frame, METH_FASTCALL,
     encode_frame_doc},
    {"parse_frames", (PyCFunction)(void (*)(void))parse_frames, METH_FASTCALL,
     parse_frames_doc},
    {NULL, NULL, 0, NULL},
};

/* The module has no state, so it is safe in subinterpreters with their own
 * GIL and in free-threaded builds; say so where the running Python asks. */
static PyModuleDef_Slot speedups_slots[] = {
#ifdef Py_mod_multiple_interpreters
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
#ifdef Py_mod_gil
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "openline.protocol._speedups",
    .m_doc = "Compiled accelerator for the WebSocket frame path (RFC 6455, section 5).",
    .m_size = 0,
    .m_methods = speedups_methods,
    .m_slots = speedups_slots,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModuleDef_Init(&speedups_module);
}
