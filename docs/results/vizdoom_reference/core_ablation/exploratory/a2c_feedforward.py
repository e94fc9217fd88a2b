"""Minimal independent feed-forward A2C on a stock scenario: does the environment wrapper let a plain agent learn?"""
import sys, time
import numpy as np
import tensorflow as tf
import keras

from distral_tf.envs.doom.stock import StockScenarioEnv

N, T, GAMMA = 16, 5, 0.99
STEPS = int(sys.argv[1]) if len(sys.argv) > 1 else 150_000
LR = float(sys.argv[2]) if len(sys.argv) > 2 else 7e-4
envs = [StockScenarioEnv("basic", buttons="scenario") for _ in range(N)]
obs = np.stack([e.reset(seed=i)[0] for i, e in enumerate(envs)])
A = int(envs[0].action_space.n)
inp = keras.Input((84, 84, 3))
x = keras.layers.Rescaling(1 / 255)(inp)
x = keras.layers.Conv2D(16, 8, 4, activation="relu")(x)
x = keras.layers.Conv2D(32, 4, 2, activation="relu")(x)
x = keras.layers.Flatten()(x)
x = keras.layers.Dense(256, activation="relu")(x)
logits = keras.layers.Dense(A, kernel_initializer="zeros")(x)
value = keras.layers.Dense(1)(x)
model = keras.Model(inp, [logits, value])
opt = keras.optimizers.RMSprop(LR, rho=0.99, epsilon=1e-5)

@tf.function
def act(o):
    lg, v = model(o)
    return tf.random.categorical(lg, 1)[:, 0], v[:, 0]

@tf.function
def train(o, a, ret):
    with tf.GradientTape() as tape:
        lg, v = model(o)
        v = v[:, 0]
        logp = tf.nn.log_softmax(lg)
        adv = tf.stop_gradient(ret - v)
        lp = tf.reduce_sum(tf.one_hot(a, A) * logp, -1)
        ent = -tf.reduce_sum(tf.exp(logp) * logp, -1)
        loss = -tf.reduce_mean(lp * adv) + 0.5 * tf.reduce_mean((ret - v) ** 2) - 0.01 * tf.reduce_mean(ent)
    g = tape.gradient(loss, model.trainable_variables)
    g, _ = tf.clip_by_global_norm(g, 40.0)
    opt.apply_gradients(zip(g, model.trainable_variables))
    return tf.reduce_mean(ent)

ep_ret = np.zeros(N); done_rets = []; t0 = time.time(); steps = 0; last = 0
while steps < STEPS:
    bo, ba, br, bd = [], [], [], []
    for _ in range(T):
        a, _ = act(obs)
        a = a.numpy()
        nobs, rews, dones = [], [], []
        for i, e in enumerate(envs):
            o, r, term, trunc, _ = e.step(int(a[i]))
            ep_ret[i] += r
            if term or trunc:
                done_rets.append(ep_ret[i]); ep_ret[i] = 0
                o, _ = e.reset()
            nobs.append(o); rews.append(r * 0.01); dones.append(term or trunc)
        bo.append(obs); ba.append(a); br.append(rews); bd.append(dones)
        obs = np.stack(nobs)
    _, boot = act(obs)
    ret = boot.numpy()
    rets = []
    for r, d in zip(reversed(br), reversed(bd)):
        ret = np.array(r) + GAMMA * ret * (1 - np.array(d, np.float32))
        rets.append(ret)
    rets = np.stack(rets[::-1]).reshape(-1).astype(np.float32)
    ent = train(np.concatenate(bo), np.concatenate(ba).astype(np.int32), rets)
    steps += N * T
    if steps - last >= 10_000:
        last = steps
        print(f"{steps} agent steps ({4*steps} frames) {time.time()-t0:.0f}s return {np.mean(done_rets[-50:]):.1f} ent {float(ent):.3f}", flush=True)
