"""Minimal independent feed-forward A2C on a stock scenario: does the environment wrapper let a plain agent learn?"""
import sys, time, os
import numpy as np
import tensorflow as tf
import keras

from distral_tf.envs.doom.stock import StockScenarioEnv

N, T, GAMMA = int(os.environ.get("NENV", 16)), int(os.environ.get("UNROLL", 5)), 0.99
STEPS = int(sys.argv[1]) if len(sys.argv) > 1 else 150_000
LR = float(sys.argv[2]) if len(sys.argv) > 2 else 7e-4
EPS = float(sys.argv[3]) if len(sys.argv) > 3 else 1e-5
envs = [StockScenarioEnv("basic", buttons="scenario") for _ in range(N)]
obs = np.stack([e.reset(seed=i)[0] for i, e in enumerate(envs)])
A = int(envs[0].action_space.n)
from distral_tf.model.networks import Column
USE_LSTM = True
col = Column(A, with_value=True).build_for((84, 84, 3))
state = Column.initial_state(N)
if os.environ.get("FORGET0") == "1":
    b = col.lstm.bias.numpy(); b[256:512] = 0.0; col.lstm.bias.assign(b)
if os.environ.get("INIT") == "orth":
    for layer in (col.conv1, col.conv2, col.fc):
        layer.kernel.assign(keras.initializers.Orthogonal(gain=2 ** 0.5, seed=1)(layer.kernel.shape))
if os.environ.get("KSCALE"):
    col.lstm.kernel.assign(col.lstm.kernel * float(os.environ["KSCALE"]))
if os.environ.get("VBIAS"):
    col.value_head.bias.assign([float(os.environ["VBIAS"])])
OBSNORM = os.environ.get("OBSNORM") == "1"
if OBSNORM:
    _fr = np.stack([e.reset(seed=100 + i)[0] for i, e in enumerate(envs)]).astype(np.float32) / 255
    for _ in range(30):
        _fr = np.concatenate([_fr, np.stack([e.step(int(np.random.randint(A)))[0] for e in envs]).astype(np.float32) / 255])
    if os.environ.get("PIXNORM") == "1":
        MU, SD = _fr.mean(0), _fr.std(0) + 0.02
    else:
        MU, SD = _fr.mean((0, 1, 2)), _fr.std((0, 1, 2)) + 1e-3
    print("obs stats", MU.mean(), SD.mean())
    obs = np.stack([e.reset(seed=i)[0] for i, e in enumerate(envs)])
def prep(o):
    if not OBSNORM:
        return o
    return ((o.astype(np.float32) / 255 - MU) / SD * 255).astype(np.float32)
first = np.ones(N, np.float32)
inp = keras.Input((84, 84, 3))
x = keras.layers.Rescaling(1 / 255)(inp)
x = keras.layers.Conv2D(16, 8, 4, activation="relu")(x)
x = keras.layers.Conv2D(32, 4, 2, activation="relu")(x)
x = keras.layers.Flatten()(x)
x = keras.layers.Dense(256, activation="relu")(x)
logits = keras.layers.Dense(A, kernel_initializer="zeros")(x)
value = keras.layers.Dense(1)(x)
model = keras.Model(inp, [logits, value])
opt = keras.optimizers.RMSprop(LR, rho=0.99, epsilon=EPS)
PAPER = os.environ.get("PAPER") == "1"  # eps inside the sqrt, summed loss, mean squares from 0
if PAPER:
    MS = [tf.Variable(tf.zeros_like(v)) for v in col.trainable_variables]

import os
NO_LSTM = os.environ.get("NO_LSTM") == "1"
def _noop_step(o, f, s):
    lg, v = col._heads(col.torso(o)); return lg, v, s
def _noop_unroll(o, f, s):
    t, b = o.shape[0], o.shape[1]
    lg, v = col._heads(col.torso(tf.reshape(o, [-1, 84, 84, 3])))
    return tf.reshape(lg, [t, b, -1]), tf.reshape(v, [t, b]), s
if os.environ.get("FEATNORM") == "1":
    _orig_torso = col.torso
    def _normed_torso(o, taps=None):
        f = _orig_torso(o, taps)
        m, var = tf.nn.moments(f, axes=[-1], keepdims=True)
        return (f - m) * tf.math.rsqrt(var + 1e-5)
    col.torso = _normed_torso
if NO_LSTM:
    col.step, col.unroll = _noop_step, _noop_unroll

@tf.function
def act(o, f, s):
    lg, v, s = col.step(o, f, s)
    return tf.random.categorical(lg, 1)[:, 0], v, s

@tf.function
def train(o, f, s, a, ret):
    with tf.GradientTape() as tape:
        lg, v, _ = col.unroll(o, f, s)
        lg = tf.reshape(lg, [-1, A]); v = tf.reshape(v, [-1])
        logp = tf.nn.log_softmax(lg)
        adv = tf.stop_gradient(ret - v)
        if os.environ.get("ADVNORM") == "1":
            adv = (adv - tf.reduce_mean(adv)) / (tf.math.reduce_std(adv) + 1e-6)
        lp = tf.reduce_sum(tf.one_hot(a, A) * logp, -1)
        ent = -tf.reduce_sum(tf.exp(logp) * logp, -1)
        red = tf.reduce_sum if PAPER else tf.reduce_mean
        loss = -red(lp * adv) + 0.5 * red((ret - v) ** 2) - 0.01 * red(ent)
    g = tape.gradient(loss, col.trainable_variables)
    g, _ = tf.clip_by_global_norm(g, 40.0)
    if PAPER:
        for var, grad, ms in zip(col.trainable_variables, g, MS):
            ms.assign(0.99 * ms + 0.01 * grad * grad)
            var.assign_sub(LR * grad / tf.sqrt(ms + EPS))
    else:
        opt.apply_gradients(zip(g, col.trainable_variables))
    taps = {}
    col.unroll(o, f, s, taps)
    feats, prev_h, proj = taps[col.lstm.name]
    prev_h = tf.reshape(prev_h, [-1, 256])
    global SAT
    SAT = (tf.reduce_mean(tf.math.reduce_std(prev_h, 0)), tf.reduce_mean(tf.abs(prev_h)),
           tf.reduce_mean(tf.math.reduce_std(tf.reshape(proj, [-1, 1024]), 0)), tf.reduce_mean(tf.abs(proj)))
    global DIAG
    DIAG = (tf.reduce_mean(tf.cast(tf.reduce_max(feats, 0) <= 0, tf.float32)),
            tf.reduce_mean(tf.math.reduce_std(tf.nn.softmax(lg), 0)),
            tf.reduce_mean(tf.math.reduce_std(v, 0)))
    return tf.reduce_mean(ent), DIAG[0], DIAG[1], DIAG[2], SAT

ep_ret = np.zeros(N); done_rets = []; t0 = time.time(); steps = 0; last = 0
while steps < STEPS:
    bo, ba, br, bd, bf = [], [], [], [], []
    s0 = state
    for _ in range(T):
        a, _, state = act(prep(obs), first, state)
        bf.append(first)
        a = a.numpy()
        nobs, rews, dones = [], [], []
        for i, e in enumerate(envs):
            o, r, term, trunc, _ = e.step(int(a[i]))
            ep_ret[i] += r
            if term or trunc:
                done_rets.append(ep_ret[i]); ep_ret[i] = 0
                o, _ = e.reset()
            nobs.append(o); rews.append(r * 0.01); dones.append(term or trunc)
        bo.append(prep(obs)); ba.append(a); br.append(rews); bd.append(dones)
        obs = np.stack(nobs); first = np.array(dones, np.float32)
    _, boot, _ = act(prep(obs), first, state)
    ret = boot.numpy()
    rets = []
    for r, d in zip(reversed(br), reversed(bd)):
        ret = np.array(r) + GAMMA * ret * (1 - np.array(d, np.float32))
        rets.append(ret)
    rets = np.stack(rets[::-1]).reshape(-1).astype(np.float32)
    ent, dead, pstd, vstd, sat = train(np.stack(bo), np.stack(bf), s0, np.concatenate(ba).astype(np.int32), rets)
    steps += N * T
    if steps - last >= 10_000:
        last = steps
        print(f"{steps} agent steps ({4*steps} frames) {time.time()-t0:.0f}s return {np.mean(done_rets[-50:]):.1f} ent {float(ent):.3f} dead_fc {float(dead):.2f} pi_std {float(pstd):.4f} v_std {float(vstd):.3f} h_std {float(sat[0]):.3f} |h| {float(sat[1]):.3f} x_std {float(sat[2]):.3f} |x| {float(sat[3]):.3f}", flush=True)
